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
)

// FuzzDecodeBody feeds arbitrary bodies to the strict decoding of every
// REST request body and to the duration type: it must never panic, must
// accept only one well-formed JSON value, and must never wrap a duration
// around. Seeds are in testdata/fuzz/FuzzDecodeBody.
func FuzzDecodeBody(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, v := range []any{&commandBody{}, &batchBody{}, &operatorTokenBody{}, &enrollmentTokenBody{}} {
			err := decodeStrict(bytes.NewReader(b), v)
			if err == nil && !json.Valid(b) {
				t.Fatalf("%T accepted invalid JSON %q", v, b)
			}
			if errors.Is(err, io.EOF) && len(bytes.TrimSpace(b)) != 0 {
				t.Fatalf("%T: non-empty body %q reported as empty", v, b)
			}
		}
		var d duration
		if err := d.UnmarshalJSON(b); err == nil {
			var secs float64
			if json.Unmarshal(b, &secs) == nil && (secs > 1 && d <= 0 || secs < -1 && d >= 0) {
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
		{``, "EOF"},
		{`{"command":"uname"} {}`, "unexpected data"},
		{`{"command":"uname"}x`, "unexpected data"},
		{`{"command":"uname","shell":true}`, "unknown field"},
		{`{"command":["uname"]}`, "cannot unmarshal"},
		{`{"command":"uname","timeout":"soon"}`, "duration"},
		{`{"command":"uname","timeout":1e300}`, "out of range"},
		{`{"command":"uname","timeout":-1e300}`, "out of range"},
		{`{"command":"uname","timeout":true}`, "duration must be"},
		{`{"command":`, "unexpected EOF"},
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
