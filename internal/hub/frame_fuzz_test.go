package hub

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/home-console/client-manager/pkg/agentproto"
)

// FuzzDecodeFrame feeds arbitrary frames to the server's message decoder:
// it must never panic, it must classify every frame consistently with its
// envelope, refuse only strictness violations of frames encoding/json
// reads, and accept only valid UTF-8. Seeds are in testdata/fuzz/FuzzDecodeFrame.
func FuzzDecodeFrame(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		fr := decodeFrame(b)
		var env agentproto.Envelope
		envErr := json.Unmarshal(b, &env)
		switch fr.class {
		case frameMalformed:
			if envErr == nil && env.Type != "" && !strings.HasPrefix(fr.problem, "frame refused: ") {
				t.Fatalf("valid envelope of type %q classified malformed: %s", env.Type, fr.problem)
			}
			return
		case frameOK, frameUnknownType, frameInvalidData:
			if envErr != nil || env.Type != fr.env.Type || env.Type == "" || !utf8.Valid(b) {
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
	case agentproto.StreamOpened:
		ok = fr.env.Type == agentproto.TypeStreamOpened && d.StreamID != 0
	case agentproto.StreamCredit:
		ok = fr.env.Type == agentproto.TypeStreamCredit && d.StreamID != 0 && d.Bytes > 0
	case agentproto.StreamClose:
		ok = fr.env.Type == agentproto.TypeStreamClose && d.StreamID != 0
	}
	if !ok {
		t.Fatalf("type %q decoded as %#v", fr.env.Type, fr.data)
	}
}

func TestDecodeFrameClasses(t *testing.T) {
	for in, want := range map[string]frameClass{
		`{"type":"heartbeat"}`:                                                                                  frameOK,
		`{"type":"heartbeat","data":"anything"}`:                                                                frameOK,
		`{"type":"hello","data":{}}`:                                                                            frameOK,
		`{"type":"hello"}`:                                                                                      frameInvalidData,
		`{"type":"hello","data":{"labels":[1]}}`:                                                                frameInvalidData,
		`{"type":"command_result","data":{"command_id":"c"}}`:                                                   frameOK,
		`{"type":"command_result","data":{}}`:                                                                   frameInvalidData,
		`{"type":"command_output","data":{"command_id":"c","seq":"x"}}`:                                         frameInvalidData,
		`{"type":"command_output","data":{"command_id":"c","stream":"stdin"}}`:                                  frameInvalidData,
		`{"type":"command_output","data":{"command_id":"c","stream":"stderr"}}`:                                 frameOK,
		`{"type":"hello","data":{},"extra":{"future":1}}`:                                                       frameOK,
		`{"type":"hello","data":{"hostname":"h","kernel":"6.1"}}`:                                               frameOK,
		`{"type":"heartbeat","type":"hello","data":{}}`:                                                         frameMalformed,
		`{"type":"hello","data":{"hostname":"a","hostname":"b"}}`:                                               frameMalformed,
		`{"type":"heartbeat","data":{"x":[{"k":1,"k":2}]}}`:                                                     frameMalformed,
		`{"Type":"hello","data":{}}`:                                                                            frameMalformed,
		`{"type":"command_result","data":{"Command_ID":"c"}}`:                                                   frameMalformed,
		"{\"type\":\"command_output\",\"data\":{\"command_id\":\"c\",\"stream\":\"stdout\",\"data\":\"\xff\"}}": frameMalformed,
		`{"type":"command_result","data":{"command_id":"c","stdout":"\ud800"}}`:                                 frameMalformed,
		`{"type":"command_accepted","data":{"command_id":"c"}}`:                                                 frameOK,
		`{"type":"error","data":{"code":"x"}}`:                                                                  frameOK,
		`{"type":"stream_opened","data":{"stream_id":1,"pid":7}}`:                                               frameOK,
		`{"type":"stream_opened","data":{"pid":7}}`:                                                             frameInvalidData,
		`{"type":"stream_credit","data":{"stream_id":1,"bytes":10}}`:                                            frameOK,
		`{"type":"stream_credit","data":{"stream_id":1,"bytes":0}}`:                                             frameInvalidData,
		`{"type":"stream_credit","data":{"stream_id":1,"bytes":"10"}}`:                                          frameInvalidData,
		`{"type":"stream_credit","data":{"stream_id":-1,"bytes":10}}`:                                           frameInvalidData,
		`{"type":"stream_close","data":{"stream_id":3,"code":"file_busy"}}`:                                     frameOK,
		`{"type":"stream_close","data":{"stream_id":3,"Code":"x"}}`:                                             frameMalformed,
		`{"type":"stream_close","data":{}}`:                                                                     frameInvalidData,
		`{"type":"telemetry_v9","data":{}}`:                                                                     frameUnknownType,
		`{"id":"1"}`:                                                                                            frameMalformed,
		`{"type":7}`:                                                                                            frameMalformed,
		`[]`:                                                                                                    frameMalformed,
		`hello there`:                                                                                           frameMalformed,
		``:                                                                                                      frameMalformed,
	} {
		if got := decodeFrame([]byte(in)).class; got != want {
			t.Errorf("decodeFrame(%s) class %d, want %d", in, got, want)
		}
	}
}

// TestDecodeFrameRefusals: a frame that repeats a key, spells one in the
// wrong case or holds invalid UTF-8 is malformed with a reason naming the
// key and where it is, short enough for a close frame.
func TestDecodeFrameRefusals(t *testing.T) {
	tests := []struct{ in, want string }{
		{`{"type":"heartbeat","type":"hello","data":{}}`, `frame refused: duplicate key "type"`},
		{`{"type":"hello","data":{"labels":{"a":"1","a":"2"}}}`, `frame refused: duplicate key "a" in data.labels`},
		{`{"Type":"hello","data":{}}`, `frame refused: unknown field "Type": field names are case-sensitive (did you mean "type"?)`},
		{`{"type":"command_result","data":{"Command_ID":"c"}}`, `frame refused: unknown field "Command_ID" in data: field names are case-sensitive`},
		{"{\"type\":\"command_output\",\"data\":{\"command_id\":\"c\",\"data\":\"\xc3\"}}", "frame refused: invalid UTF-8 at byte offset 58 in data.data"},
		{`{"type":"hello","data":{"` + strings.Repeat("K", 300) + `":1,"` + strings.Repeat("K", 300) + `":1}}`, `frame refused: duplicate key "KKKK`},
	}
	for _, tt := range tests {
		f := decodeFrame([]byte(tt.in))
		if f.class != frameMalformed || !strings.HasPrefix(f.problem, tt.want) || len(f.problem) > maxCloseReason || !utf8.ValidString(f.problem) {
			t.Errorf("decodeFrame(%.80q) = class %d %q, want malformed %q (at most %d bytes)", tt.in, f.class, f.problem, tt.want, maxCloseReason)
		}
	}
}
