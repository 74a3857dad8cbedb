// Package strictjson decodes JSON input that must say exactly one thing:
// one value, no key twice in an object (at any depth), object keys equal
// byte for byte to the json names of the target's fields (encoding/json
// alone matches them case-insensitively), valid UTF-8 without lone
// surrogate escapes, numbers in range for the field they fill, and nothing
// after the value. Unknown fields are refused too unless
// Options.AllowUnknownFields.
//
// It validates the input with a token walk guided by the target's type,
// then decodes it with encoding/json, so the result is what encoding/json
// gives for every input it accepts. Every refusal is an *Error naming the
// offending field and byte offset, or ErrEmpty.
package strictjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
)

// MaxDepth is the deepest nesting of arrays and objects accepted (as in
// encoding/json).
const MaxDepth = 10000

// ErrEmpty is returned for an input that holds no JSON value (empty or
// only whitespace).
var ErrEmpty = errors.New("no JSON value in the input")

// Options change what Decode refuses. The zero value is the strictest.
type Options struct {
	// AllowUnknownFields ignores object keys that name no field of the
	// target struct, for protocols that let newer peers add fields. A
	// key that differs from a field's name only by case is refused
	// either way, since encoding/json would fill that field with it.
	AllowUnknownFields bool
}

// Decode is Options{}.Decode: the strictest decoding.
func Decode(data []byte, v any) error { return Options{}.Decode(data, v) }

// Decode decodes the one JSON value in data into v, a non-nil pointer, or
// returns ErrEmpty or an *Error saying what is wrong; v is left untouched
// unless the input is accepted.
func (o Options) Decode(data []byte, v any) error {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return &json.InvalidUnmarshalError{Type: reflect.TypeOf(v)}
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return ErrEmpty
	}
	w := newWalker(data, o)
	if err := w.document(rv.Type().Elem()); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if !o.AllowUnknownFields {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(v); err != nil {
		// The walk checks what encoding/json checks; this is a backstop.
		return fromJSON(err, dec.InputOffset())
	}
	return nil
}

// Kind classifies an *Error.
type Kind int

// The kinds of refusal.
const (
	// KindSyntax: the input is not JSON.
	KindSyntax Kind = iota + 1
	// KindUnexpectedEnd: the input ends inside the value.
	KindUnexpectedEnd
	// KindTrailingData: something follows the value.
	KindTrailingData
	// KindTooDeep: nesting beyond MaxDepth.
	KindTooDeep
	// KindInvalidUTF8: bytes that are not UTF-8, or an escape of a lone
	// UTF-16 surrogate (\ud800), inside a string.
	KindInvalidUTF8
	// KindDuplicateKey: a key given twice in one object.
	KindDuplicateKey
	// KindUnknownField: a key that names no field of the target.
	KindUnknownField
	// KindFieldCase: a key that names a field only case-insensitively.
	KindFieldCase
	// KindType: a value of the wrong JSON type for its field, or a
	// number out of range for it.
	KindType
	// KindValue: a value its field's own decoder (json.Unmarshaler)
	// refused.
	KindValue
)

// Error is a refusal of the input.
type Error struct {
	Kind Kind
	// Path names the value concerned from the top: "" for the top level,
	// then field names and map keys joined by dots ("restart.policy"),
	// keys that are not plain words quoted in brackets (labels["a.b"]),
	// and array indexes in brackets ("args[2]"). For a key error
	// (duplicate, unknown, wrong case) it is the path of the object
	// holding the key.
	Path string
	// Key is the offending key of a key error.
	Key string
	// Offset is the byte offset in the input where the problem is.
	Offset int64
	// Detail says what is wrong in words: the syntax error, the type
	// mismatch ("expected int, got string"), the field's own error, or
	// for KindFieldCase the field name the key resembles.
	Detail string
}

// Error implements error.
func (e *Error) Error() string {
	in := ""
	if e.Path != "" {
		in = " in " + e.Path
	}
	switch e.Kind {
	case KindSyntax:
		return fmt.Sprintf("invalid JSON at byte offset %d: %s", e.Offset, e.Detail)
	case KindUnexpectedEnd:
		return "unexpected end of JSON input"
	case KindTrailingData:
		return fmt.Sprintf("unexpected data after the JSON value at byte offset %d", e.Offset)
	case KindTooDeep:
		return fmt.Sprintf("JSON nested deeper than %d levels at byte offset %d", MaxDepth, e.Offset)
	case KindInvalidUTF8:
		return fmt.Sprintf("%s at byte offset %d%s", e.Detail, e.Offset, in)
	case KindDuplicateKey:
		return fmt.Sprintf("duplicate key %s%s", quoteKey(e.Key), in)
	case KindUnknownField:
		return fmt.Sprintf("unknown field %s%s", quoteKey(e.Key), in)
	case KindFieldCase:
		return fmt.Sprintf("unknown field %s%s: field names are case-sensitive (did you mean %q?)", quoteKey(e.Key), in, e.Detail)
	}
	if e.Path == "" {
		return e.Detail
	}
	return "field " + e.Path + ": " + e.Detail
}

// maxKeyShown bounds how much of a key an error message repeats.
const maxKeyShown = 64

// quoteKey quotes a key for a message, cut to maxKeyShown bytes.
func quoteKey(k string) string {
	if len(k) <= maxKeyShown {
		return strconv.Quote(k)
	}
	n := maxKeyShown
	for n > 0 && k[n]&0xC0 == 0x80 {
		n--
	}
	return strconv.Quote(k[:n]) + "…"
}

// fromJSON converts an error of encoding/json at offset into an *Error.
func fromJSON(err error, offset int64) error {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return &Error{Kind: KindUnexpectedEnd, Offset: offset}
	case errors.As(err, &syntax):
		return &Error{Kind: KindSyntax, Offset: max(syntax.Offset-1, 0), Detail: syntax.Error()}
	case errors.As(err, &typ):
		return &Error{Kind: KindType, Path: typ.Field, Offset: typ.Offset, Detail: fmt.Sprintf("expected %s, got %s", typ.Type, typ.Value)}
	}
	return &Error{Kind: KindValue, Offset: offset, Detail: err.Error()}
}
