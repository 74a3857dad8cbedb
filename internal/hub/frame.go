package hub

import (
	"encoding/json"

	"github.com/home-console/client-manager/pkg/agentproto"
)

// frameClass is what an inbound frame turned out to be.
type frameClass int

const (
	// frameOK is an envelope of a known type whose data decoded.
	frameOK frameClass = iota + 1
	// frameMalformed is not a JSON envelope with a type: the connection
	// is closed with agentproto.CloseInvalidData.
	frameMalformed
	// frameUnknownType is an envelope of a type this server does not
	// know: answered with error{code:"unknown_type"}.
	frameUnknownType
	// frameInvalidData is an envelope of a known type whose data does not
	// decode or lacks a required field: answered with
	// error{code:"invalid_data"}.
	frameInvalidData
)

// frame is one decoded inbound message.
type frame struct {
	class frameClass
	env   agentproto.Envelope
	// data is the typed payload when class is frameOK: agentproto.Hello,
	// agentproto.CommandRef (command_accepted), agentproto.CommandOutput,
	// agentproto.CommandResult or agentproto.Error; nil for heartbeat,
	// whose data is ignored.
	data any
	// problem explains a class other than frameOK.
	problem string
}

// decodeFrame parses one text frame from an agent into its envelope and
// typed data, and classifies it. It does no I/O and never panics.
func decodeFrame(b []byte) frame {
	var f frame
	if err := json.Unmarshal(b, &f.env); err != nil || f.env.Type == "" {
		return frame{class: frameMalformed, problem: "frame is not a JSON envelope {type,id,data}"}
	}
	switch f.env.Type {
	case agentproto.TypeHeartbeat:
		f.class = frameOK
	case agentproto.TypeHello:
		decodeData[agentproto.Hello](&f, nil)
	case agentproto.TypeError:
		decodeData[agentproto.Error](&f, nil)
	case agentproto.TypeCommandAccepted:
		decodeData(&f, func(r *agentproto.CommandRef) string { return r.CommandID })
	case agentproto.TypeCommandOutput:
		decodeData(&f, func(o *agentproto.CommandOutput) string { return o.CommandID })
	case agentproto.TypeCommandResult:
		decodeData(&f, func(r *agentproto.CommandResult) string { return r.CommandID })
	default:
		f.class, f.problem = frameUnknownType, "unknown message type "+truncate(f.env.Type, 64)
	}
	return f
}

// decodeData decodes f's data as a T into f.data. commandID, if not nil,
// returns the command id the data must carry.
func decodeData[T any](f *frame, commandID func(*T) string) {
	var v T
	if err := json.Unmarshal(f.env.Data, &v); err != nil {
		f.class, f.problem = frameInvalidData, f.env.Type+" data is not valid: "+truncate(err.Error(), 200)
		return
	}
	if commandID != nil && commandID(&v) == "" {
		f.class, f.problem = frameInvalidData, f.env.Type+" needs a command_id"
		return
	}
	f.class, f.data = frameOK, v
}
