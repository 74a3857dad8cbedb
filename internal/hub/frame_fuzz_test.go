package hub

import (
	"encoding/json"
	"testing"

	"github.com/home-console/client-manager/pkg/agentproto"
)

// FuzzDecodeFrame feeds arbitrary frames to the server's message decoder:
// it must never panic, and it must classify every frame consistently with
// its envelope. Seeds are in testdata/fuzz/FuzzDecodeFrame.
func FuzzDecodeFrame(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		fr := decodeFrame(b)
		var env agentproto.Envelope
		envErr := json.Unmarshal(b, &env)
		switch fr.class {
		case frameMalformed:
			if envErr == nil && env.Type != "" {
				t.Fatalf("valid envelope of type %q classified malformed", env.Type)
			}
			return
		case frameOK, frameUnknownType, frameInvalidData:
			if envErr != nil || env.Type != fr.env.Type || env.Type == "" {
				t.Fatalf("class %d for %q (envelope error %v)", fr.class, b, envErr)
			}
		default:
			t.Fatalf("unknown class %d", fr.class)
		}
		if fr.class != frameOK {
			if fr.problem == "" || fr.data != nil {
				t.Fatalf("class %d without a problem, or with data %v", fr.class, fr.data)
			}
			return
		}
		checkData(t, fr)
	})
}

// checkData checks that a frame classified OK carries the data its type
// promises.
func checkData(t *testing.T, fr frame) {
	t.Helper()
	ok := false
	switch d := fr.data.(type) {
	case nil:
		ok = fr.env.Type == agentproto.TypeHeartbeat
	case agentproto.Hello:
		ok = fr.env.Type == agentproto.TypeHello
	case agentproto.Error:
		ok = fr.env.Type == agentproto.TypeError
	case agentproto.CommandRef:
		ok = fr.env.Type == agentproto.TypeCommandAccepted && d.CommandID != ""
	case agentproto.CommandOutput:
		ok = fr.env.Type == agentproto.TypeCommandOutput && d.CommandID != ""
	case agentproto.CommandResult:
		ok = fr.env.Type == agentproto.TypeCommandResult && d.CommandID != ""
	}
	if !ok {
		t.Fatalf("type %q decoded as %#v", fr.env.Type, fr.data)
	}
}

func TestDecodeFrameClasses(t *testing.T) {
	for in, want := range map[string]frameClass{
		`{"type":"heartbeat"}`:                                          frameOK,
		`{"type":"heartbeat","data":"anything"}`:                        frameOK,
		`{"type":"hello","data":{}}`:                                    frameOK,
		`{"type":"hello"}`:                                              frameInvalidData,
		`{"type":"hello","data":{"labels":[1]}}`:                        frameInvalidData,
		`{"type":"command_result","data":{"command_id":"c"}}`:           frameOK,
		`{"type":"command_result","data":{}}`:                           frameInvalidData,
		`{"type":"command_output","data":{"command_id":"c","seq":"x"}}`: frameInvalidData,
		`{"type":"command_accepted","data":{"command_id":"c"}}`:         frameOK,
		`{"type":"error","data":{"code":"x"}}`:                          frameOK,
		`{"type":"telemetry_v9","data":{}}`:                             frameUnknownType,
		`{"id":"1"}`:                                                    frameMalformed,
		`{"type":7}`:                                                    frameMalformed,
		`[]`:                                                            frameMalformed,
		`hello there`:                                                   frameMalformed,
		``:                                                              frameMalformed,
	} {
		if got := decodeFrame([]byte(in)).class; got != want {
			t.Errorf("decodeFrame(%s) class %d, want %d", in, got, want)
		}
	}
}
