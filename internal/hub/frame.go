package hub

import (
	"errors"
	"strings"

	"github.com/home-console/client-manager/internal/strictjson"
	"github.com/home-console/client-manager/pkg/agentproto"
)

// frameClass is what an inbound frame turned out to be.
type frameClass int

const (
	// frameOK is an envelope of a known type whose data decoded.
	frameOK frameClass = iota + 1
	// frameMalformed is not a JSON envelope with a type, or repeats a
	// key, spells one in the wrong case or holds invalid UTF-8 anywhere:
	// the connection is closed with agentproto.CloseInvalidData.
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
	// agentproto.CommandResult, agentproto.Error, agentproto.StreamOpened,
	// agentproto.StreamCredit or agentproto.StreamClose; nil for
	// heartbeat, whose data is ignored.
	data any
	// problem explains a class other than frameOK.
	problem string
}

// frameDecoding is how inbound frames are decoded: strictly (a key given
// twice, a key that names a field only case-insensitively, invalid UTF-8
// and lone surrogate escapes make the frame malformed), except that
// unknown fields are ignored, so newer agents can add some
// (docs/protocol.md §3).
var frameDecoding = strictjson.Options{AllowUnknownFields: true}

// decodeFrame parses one text frame from an agent into its envelope and
// typed data, and classifies it. It does no I/O and never panics.
func decodeFrame(b []byte) frame {
	var f frame
	if err := frameDecoding.Decode(b, &f.env); err != nil || f.env.Type == "" {
		if problem, ok := refusal(err, ""); ok {
			return frame{class: frameMalformed, problem: problem}
		}
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
		decodeData(&f, func(r *agentproto.CommandRef) string { return needID(r.CommandID) })
	case agentproto.TypeCommandOutput:
		decodeData(&f, checkOutput)
	case agentproto.TypeCommandResult:
		decodeData(&f, func(r *agentproto.CommandResult) string { return needID(r.CommandID) })
	case agentproto.TypeStreamOpened:
		decodeData(&f, func(o *agentproto.StreamOpened) string { return needStream(o.StreamID) })
	case agentproto.TypeStreamCredit:
		decodeData(&f, checkCredit)
	case agentproto.TypeStreamClose:
		decodeData(&f, func(c *agentproto.StreamClose) string { return needStream(c.StreamID) })
	default:
		f.class, f.problem = frameUnknownType, "unknown message type "+truncate(f.env.Type, 64)
	}
	return f
}

// refusal phrases a strictness refusal of a frame (a repeated key, a key
// in the wrong case, invalid UTF-8) as a close reason; ok is false for
// other errors. within is the envelope field the error's path is in (""
// for the envelope itself).
func refusal(err error, within string) (string, bool) {
	var e *strictjson.Error
	if !errors.As(err, &e) {
		return "", false
	}
	switch e.Kind {
	case strictjson.KindDuplicateKey, strictjson.KindFieldCase, strictjson.KindInvalidUTF8:
	default:
		return "", false
	}
	if within != "" {
		e.Path = strings.TrimSuffix(within+"."+e.Path, ".")
	}
	return truncate("frame refused: "+e.Error(), maxCloseReason), true
}

// decodeData decodes f's data as a T into f.data. check, if not nil,
// returns what is wrong with the decoded data ("" for nothing).
func decodeData[T any](f *frame, check func(*T) string) {
	var v T
	if err := frameDecoding.Decode(f.env.Data, &v); err != nil {
		if problem, ok := refusal(err, "data"); ok {
			f.class, f.problem = frameMalformed, problem
			return
		}
		f.class, f.problem = frameInvalidData, f.env.Type+" data is not valid: "+truncate(err.Error(), 200)
		return
	}
	if check != nil {
		if problem := check(&v); problem != "" {
			f.class, f.problem = frameInvalidData, f.env.Type+" "+problem
			return
		}
	}
	f.class, f.data = frameOK, v
}

// needID is the problem of data without a command id.
func needID(commandID string) string {
	if commandID == "" {
		return "needs a command_id"
	}
	return ""
}

// checkOutput requires a command id and a known stream.
func checkOutput(o *agentproto.CommandOutput) string {
	if o.Stream != agentproto.StreamStdout && o.Stream != agentproto.StreamStderr {
		return "stream must be " + agentproto.StreamStdout + " or " + agentproto.StreamStderr
	}
	return needID(o.CommandID)
}

// isStreamMessage reports whether typ is a stream message an agent sends.
func isStreamMessage(typ string) bool {
	switch typ {
	case agentproto.TypeStreamOpened, agentproto.TypeStreamCredit, agentproto.TypeStreamClose:
		return true
	}
	return false
}

// needStream is the problem of stream data without a stream id.
func needStream(id uint32) string {
	if id == 0 {
		return "needs a non-zero stream_id"
	}
	return ""
}

// checkCredit requires a stream id and a positive byte count.
func checkCredit(c *agentproto.StreamCredit) string {
	if c.Bytes <= 0 {
		return "bytes must be positive"
	}
	return needStream(c.StreamID)
}
