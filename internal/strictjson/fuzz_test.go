package strictjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"unicode/utf8"
)

// FuzzDecode feeds arbitrary input to Decode into a struct and into an
// interface: it must never panic, must accept only what encoding/json
// accepts (with unknown fields disallowed), must then decode the same
// value, must accept only valid UTF-8, and must call only invalid JSON
// a syntax error. Seeds are in testdata/fuzz/FuzzDecode.
func FuzzDecode(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		var got, want target
		checkAgainstJSON(t, b, &got, &want)
		var anyGot, anyWant any
		checkAgainstJSON(t, b, &anyGot, &anyWant)
	})
}

// checkAgainstJSON decodes b into got with Decode and into want with
// encoding/json, and fails t if Decode accepted what encoding/json
// refuses, decoded something else, or accepted invalid UTF-8.
func checkAgainstJSON(t *testing.T, b []byte, got, want any) {
	t.Helper()
	err := Decode(b, got)
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	jsonErr := dec.Decode(want)
	if err != nil {
		var e *Error
		notJSON := errors.Is(err, ErrEmpty) || errors.As(err, &e) && (e.Kind == KindSyntax || e.Kind == KindUnexpectedEnd || e.Kind == KindTrailingData)
		if err.Error() == "" || notJSON && json.Valid(b) {
			t.Fatalf("Decode(%q) = %v", b, err)
		}
		return
	}
	if jsonErr != nil || !utf8.Valid(b) || !reflect.DeepEqual(got, want) {
		t.Fatalf("Decode accepted %q as %#v; encoding/json: %v, %#v", b, got, jsonErr, want)
	}
}
