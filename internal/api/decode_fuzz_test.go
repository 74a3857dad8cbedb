package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/home-console/client-manager/internal/strictjson"
)

// FuzzDecodeBody feeds arbitrary bodies to the strict decoding of every
// REST request body and to the duration type: it must never panic, must
// accept only one well-formed JSON value, and must never wrap a duration
// around. Seeds are in testdata/fuzz/FuzzDecodeBody.
func FuzzDecodeBody(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, v := range []any{&commandBody{}, &batchBody{}, &operatorTokenBody{}, &enrollmentTokenBody{}} {
			err := decodeStrict(bytes.NewReader(b), v)
			if err == nil && (!json.Valid(b) || !utf8.Valid(b)) {
				t.Fatalf("%T accepted invalid JSON or UTF-8 %q", v, b)
			}
			if errors.Is(err, strictjson.ErrEmpty) && len(bytes.TrimSpace(b)) != 0 {
				t.Fatalf("%T: non-empty body %q reported as empty", v, b)
			}
		}
		var d duration
		if err := d.UnmarshalJSON(b); err == nil {
			var secs float64
			if json.Unmarshal(b, &secs) == nil && (secs > 1 && d <= 0 || secs < -1 && d >= 0 || secs != 0 && d == 0) {
				t.Fatalf("%s seconds decoded as %s", b, time.Duration(d))
			}
		}
	})
}

func TestDecodeStrict(t *testing.T) {
	tests := []struct {
		body string
		want string // "" for success, else a part of the error
	}{
		{`{"command":"uname","args":["-a"],"timeout":"10s","ttl":30}`, ""},
		{` {"command":"uname"} ` + "\n", ""},
		{``, "no JSON value"},
		{`{"command":"uname"} {}`, "unexpected data"},
		{`{"command":"uname"}x`, "unexpected data"},
		{`{"command":"uname","shell":true}`, `unknown field "shell"`},
		{`{"command":["uname"]}`, "field command: expected a string, got an array"},
		{`{"command":"uname","timeout":"soon"}`, `field timeout: duration "soon"`},
		{`{"command":"uname","timeout":1e300}`, "field timeout: duration 1e300 seconds is out of range"},
		{`{"command":"uname","timeout":-1e300}`, "out of range"},
		{`{"command":"uname","timeout":1e400}`, "field timeout: duration 1e400 seconds is out of range"},
		{`{"command":"uname","timeout":true}`, "duration must be"},
		{`{"command":`, "unexpected end of JSON input"},
		{`{"command":"echo","command":"uname"}`, `duplicate key "command"`},
		{`{"Command":"uname"}`, `unknown field "Command": field names are case-sensitive (did you mean "command"?)`},
		{`{"command":"uname","ARGS":["-a"]}`, `did you mean "args"?`},
		{"{\"command\":\"echo\",\"args\":[\"\xff\xfe\"]}", "invalid UTF-8 at byte offset 27 in args[0]"},
		{`{"command":"echo","args":["\udc00"]}`, `lone UTF-16 surrogate \udc00 at byte offset 27 in args[0]`},
		{`{"command":"uname","timeout":1e-300}`, "field timeout: duration 1e-300 seconds is below 1ms"},
		{`{"command":"uname","timeout":"0.1ns"}`, `field timeout: duration "0.1ns" is below 1ms`},
		{`{"command":"uname","ttl":"500us"}`, `field ttl: duration "500us" is below 1ms`},
		{`{"command":"uname","timeout":0.0005}`, "below 1ms"},
		{`{"command":"uname","timeout":"0s","ttl":0}`, ""},
		{`{"command":"uname","timeout":0.001}`, ""},
	}
	for _, tt := range tests {
		var body commandBody
		err := decodeStrict(strings.NewReader(tt.body), &body)
		if (err == nil) != (tt.want == "") || err != nil && !strings.Contains(err.Error(), tt.want) {
			t.Errorf("decodeStrict(%q) = %v, want %q", tt.body, err, tt.want)
		}
	}
	var body commandBody
	if err := decodeStrict(strings.NewReader(`{"timeout":9223372036}`), &body); err != nil || time.Duration(body.Timeout) <= 0 {
		t.Errorf("largest duration in seconds = %v, %v", time.Duration(body.Timeout), err)
	}
	rec := httptest.NewRecorder()
	big := http.MaxBytesReader(rec, io.NopCloser(strings.NewReader(`{"command":"uname"}`+strings.Repeat(" ", 100))), 40)
	var tooBig *http.MaxBytesError
	if err := decodeStrict(big, &body); !errors.As(err, &tooBig) {
		t.Errorf("body over the limit = %v, want *http.MaxBytesError", err)
	}
}
