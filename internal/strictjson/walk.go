package strictjson

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
	"strings"
)

// walker validates one input against a schema in a single pass over its
// bytes: a recursive-descent parser of the JSON grammar that allocates
// only for the rare escaped key and for errors.
type walker struct {
	data []byte
	pos  int
	opts Options
	// stack is the path from the top to the value being walked.
	stack []step
	// bad is the offset of the first invalid UTF-8 byte or lone
	// surrogate escape (-1 if none), badDetail which of the two.
	bad       int
	badDetail string
}

var anySchema = schemaOf(reflect.TypeFor[any]())

func newWalker(data []byte, o Options) *walker {
	w := &walker{data: data, opts: o}
	w.bad, w.badDetail = firstBadText(data)
	return w
}

// document walks the whole input as one value of type t.
func (w *walker) document(t reflect.Type) error {
	if err := w.value(schemaOf(t), 0); err != nil {
		return err
	}
	w.skipSpace()
	if w.pos < len(w.data) {
		return &Error{Kind: KindTrailingData, Offset: int64(w.pos)}
	}
	return nil
}

// value walks one value that fills a target of schema s.
func (w *walker) value(s *schema, depth int) error {
	if depth > MaxDepth {
		return &Error{Kind: KindTooDeep, Path: w.path(), Offset: int64(w.pos)}
	}
	w.skipSpace()
	if s.shape == shapeUnmarshaler {
		return w.unmarshaler(s, depth)
	}
	start := w.pos
	switch c := w.peek(); {
	case c == '{':
		if s.shape != shapeAny && s.shape != shapeStruct && s.shape != shapeMap {
			return w.mismatch(s, start, "an object")
		}
		return w.object(s, depth+1)
	case c == '[':
		if s.shape != shapeAny && s.shape != shapeSlice {
			return w.mismatch(s, start, "an array")
		}
		return w.array(s, depth+1)
	case c == '"':
		if _, _, err := w.str(); err != nil {
			return err
		}
		if s.shape != shapeAny && s.shape != shapeString {
			return w.mismatch(s, start, "a string")
		}
	case c == 'n':
		return w.literal("null") // null leaves any target as it is
	case c == 't' || c == 'f':
		word := "false"
		if c == 't' {
			word = "true"
		}
		if err := w.literal(word); err != nil {
			return err
		}
		if s.shape != shapeAny && s.shape != shapeBool {
			return w.mismatch(s, start, "a boolean")
		}
	case c == '-' || '0' <= c && c <= '9':
		return w.numberValue(s)
	default:
		return w.syntaxError()
	}
	return nil
}

// object walks an object whose '{' is at w.pos.
func (w *walker) object(s *schema, depth int) error {
	w.pos++
	if w.skipSpace(); w.peek() == '}' {
		w.pos++
		return nil
	}
	var seen keySet
	for {
		if w.skipSpace(); w.peek() != '"' {
			return w.syntaxError()
		}
		at := w.pos
		key, err := w.key()
		if err != nil {
			return err
		}
		if !seen.add(key) {
			return &Error{Kind: KindDuplicateKey, Path: w.path(), Key: string(key), Offset: int64(at)}
		}
		child, err := w.member(s, key, at)
		if err != nil {
			return err
		}
		if w.skipSpace(); w.peek() != ':' {
			return w.syntaxError()
		}
		w.pos++
		w.stack = append(w.stack, step{key: key})
		if err := w.value(child, depth); err != nil {
			return err
		}
		w.stack = w.stack[:len(w.stack)-1]
		if done, err := w.next('}'); done || err != nil {
			return err
		}
	}
}

// array walks an array whose '[' is at w.pos.
func (w *walker) array(s *schema, depth int) error {
	w.pos++
	if w.skipSpace(); w.peek() == ']' {
		w.pos++
		return nil
	}
	elem := anySchema
	if s.shape == shapeSlice {
		elem = schemaOf(s.elem)
	}
	for i := 0; ; i++ {
		w.stack = append(w.stack, step{index: i, isIndex: true})
		if err := w.value(elem, depth); err != nil {
			return err
		}
		w.stack = w.stack[:len(w.stack)-1]
		if done, err := w.next(']'); done || err != nil {
			return err
		}
	}
}

// next consumes the ',' between members or elements, or the closing
// delimiter end, and reports whether it was the latter.
func (w *walker) next(end byte) (bool, error) {
	w.skipSpace()
	switch w.peek() {
	case ',':
		w.pos++
		return false, nil
	case end:
		w.pos++
		return true, nil
	}
	return false, w.syntaxError()
}

// member returns the schema of the value of key in an object of schema
// s, or the error for a key s has no place for.
func (w *walker) member(s *schema, key []byte, at int) (*schema, error) {
	switch s.shape {
	case shapeMap:
		if err := checkMapKey(s.key, string(key)); err != nil {
			w.stack = append(w.stack, step{key: key})
			return nil, &Error{Kind: KindType, Path: w.path(), Offset: int64(at), Detail: err.Error()}
		}
		return schemaOf(s.elem), nil
	case shapeStruct:
		if t, ok := s.fields[string(key)]; ok {
			return schemaOf(t), nil
		}
		if name, ok := s.folded[foldName(string(key))]; ok {
			return nil, &Error{Kind: KindFieldCase, Path: w.path(), Key: string(key), Offset: int64(at), Detail: name}
		}
		if !w.opts.AllowUnknownFields {
			return nil, &Error{Kind: KindUnknownField, Path: w.path(), Key: string(key), Offset: int64(at)}
		}
	}
	return anySchema, nil
}

// unmarshaler walks a value whose type decodes itself: it checks the raw
// value as any value, then lets the type's UnmarshalJSON judge it.
func (w *walker) unmarshaler(s *schema, depth int) error {
	start := w.pos
	if err := w.value(anySchema, depth); err != nil {
		return err
	}
	raw := w.data[start:w.pos]
	if s.pointer && string(raw) == "null" {
		return nil
	}
	u := reflect.New(s.base).Interface().(json.Unmarshaler)
	if err := u.UnmarshalJSON(raw); err != nil {
		return &Error{Kind: KindValue, Path: w.path(), Offset: int64(start), Detail: err.Error()}
	}
	return nil
}

// numberValue walks a number and checks it against s.
func (w *walker) numberValue(s *schema) error {
	start := w.pos
	n, err := w.number()
	if err != nil {
		return err
	}
	switch s.shape {
	case shapeAny:
		return nil
	case shapeInt, shapeUint, shapeFloat:
		if err := checkNumber(s, string(n)); err != nil {
			return &Error{Kind: KindType, Path: w.path(), Offset: int64(start), Detail: err.Error()}
		}
		return nil
	}
	return w.mismatch(s, start, "a number")
}

// mismatch is the error for a value of the wrong JSON type.
func (w *walker) mismatch(s *schema, start int, got string) error {
	return &Error{Kind: KindType, Path: w.path(), Offset: int64(start), Detail: fmt.Sprintf("expected %s, got %s", shapeNames[s.shape], got)}
}

// shapeNames say in words what a shape expects.
var shapeNames = map[shape]string{
	shapeStruct: "an object", shapeMap: "an object", shapeSlice: "an array", shapeBool: "true or false",
	shapeString: "a string", shapeInt: "an integer", shapeUint: "a non-negative integer", shapeFloat: "a number",
}

// step is one step of the path from the top to a value: an object key
// or an array index.
type step struct {
	key     []byte
	index   int
	isIndex bool
}

// path renders the current position as Error.Path describes.
func (w *walker) path() string {
	var b strings.Builder
	for _, st := range w.stack {
		switch {
		case st.isIndex:
			b.WriteString("[" + strconv.Itoa(st.index) + "]")
		case !isWord(string(st.key)):
			b.WriteString("[" + quoteKey(string(st.key)) + "]")
		case b.Len() > 0:
			b.WriteString("." + string(st.key))
		default:
			b.Write(st.key)
		}
	}
	return b.String()
}
