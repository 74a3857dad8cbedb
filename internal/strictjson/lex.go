package strictjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
)

// skipSpace moves past JSON whitespace.
func (w *walker) skipSpace() {
	for w.pos < len(w.data) {
		switch w.data[w.pos] {
		case ' ', '\t', '\n', '\r':
			w.pos++
		default:
			return
		}
	}
}

// peek returns the byte at w.pos, 0 at the end.
func (w *walker) peek() byte {
	if w.pos < len(w.data) {
		return w.data[w.pos]
	}
	return 0
}

// str walks a string whose '"' is at w.pos and returns its raw content
// and whether it holds escapes. A string that holds the input's first
// invalid UTF-8 or lone surrogate is an error about the current value.
func (w *walker) str() (content []byte, escaped bool, err error) {
	start := w.pos + 1
	for i := start; i < len(w.data); i++ {
		switch c := w.data[i]; {
		case c == '"':
			w.pos = i + 1
			if w.bad >= 0 && w.bad < w.pos {
				return nil, false, &Error{Kind: KindInvalidUTF8, Path: w.path(), Offset: int64(w.bad), Detail: w.badDetail}
			}
			return w.data[start:i], escaped, nil
		case c == '\\':
			n := escapeLen(w.data[i:])
			if n == 0 {
				w.pos = i
				return nil, false, w.syntaxError()
			}
			escaped, i = true, i+n-1
		case c < 0x20:
			w.pos = i
			return nil, false, w.syntaxError()
		}
	}
	w.pos = len(w.data)
	return nil, false, w.syntaxError()
}

// escapeLen returns the length of the valid escape at the start of b, or 0.
func escapeLen(b []byte) int {
	if len(b) < 2 {
		return 0
	}
	switch b[1] {
	case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		return 2
	case 'u':
		if _, ok := escapedRune(b); ok {
			return 6
		}
	}
	return 0
}

// key walks an object key and returns it unescaped.
func (w *walker) key() ([]byte, error) {
	start := w.pos
	content, escaped, err := w.str()
	if err != nil || !escaped {
		return content, err
	}
	var k string
	if err := json.Unmarshal(w.data[start:w.pos], &k); err != nil {
		return nil, w.syntaxError()
	}
	return []byte(k), nil
}

// number walks a number and returns its literal.
func (w *walker) number() ([]byte, error) {
	start, d := w.pos, w.data
	i := start
	if i < len(d) && d[i] == '-' {
		i++
	}
	switch {
	case i < len(d) && d[i] == '0':
		i++
	case i < len(d) && '1' <= d[i] && d[i] <= '9':
		i = digits(d, i)
	default:
		w.pos = i
		return nil, w.syntaxError()
	}
	if i < len(d) && d[i] == '.' {
		if j := digits(d, i+1); j > i+1 {
			i = j
		} else {
			w.pos = j
			return nil, w.syntaxError()
		}
	}
	if i < len(d) && (d[i] == 'e' || d[i] == 'E') {
		i++
		if i < len(d) && (d[i] == '+' || d[i] == '-') {
			i++
		}
		if j := digits(d, i); j > i {
			i = j
		} else {
			w.pos = j
			return nil, w.syntaxError()
		}
	}
	w.pos = i
	return d[start:i], nil
}

// digits returns the index after the run of digits at d[i:].
func digits(d []byte, i int) int {
	for i < len(d) && '0' <= d[i] && d[i] <= '9' {
		i++
	}
	return i
}

// literal walks the literal word (true, false or null).
func (w *walker) literal(word string) error {
	if !bytes.HasPrefix(w.data[w.pos:], []byte(word)) {
		return w.syntaxError()
	}
	w.pos += len(word)
	return nil
}

// syntaxError is the error for the input not being JSON at or before
// w.pos. encoding/json's whole-input check phrases it and finds the
// offending byte.
func (w *walker) syntaxError() error {
	var raw json.RawMessage
	var syntax *json.SyntaxError
	if errors.As(json.Unmarshal(w.data, &raw), &syntax) {
		if strings.HasPrefix(syntax.Error(), "unexpected end of JSON input") {
			return &Error{Kind: KindUnexpectedEnd, Offset: int64(len(w.data))}
		}
		return &Error{Kind: KindSyntax, Offset: max(syntax.Offset-1, 0), Detail: syntax.Error()}
	}
	if w.pos >= len(w.data) {
		return &Error{Kind: KindUnexpectedEnd, Offset: int64(len(w.data))}
	}
	return &Error{Kind: KindSyntax, Offset: int64(w.pos), Detail: fmt.Sprintf("invalid character %q", w.data[w.pos])}
}

// checkNumber checks that the number literal n fits s's Go type.
func checkNumber(s *schema, n string) error {
	bits := s.base.Bits()
	switch s.shape {
	case shapeInt:
		if _, err := strconv.ParseInt(n, 10, bits); err != nil {
			return numberError(n, err, "an integer", fmt.Sprintf("%d to %d", -(int64(1)<<(bits-1)), int64(1)<<(bits-1)-1))
		}
	case shapeUint:
		if _, err := strconv.ParseUint(n, 10, bits); err != nil {
			if n[0] == '-' && isInteger(n[1:]) {
				err = strconv.ErrRange
			}
			return numberError(n, err, "a non-negative integer", fmt.Sprintf("0 to %d", uint64(1)<<(bits-1)<<1-1))
		}
	case shapeFloat:
		if _, err := strconv.ParseFloat(n, bits); err != nil {
			return fmt.Errorf("number %s is out of range for a %d-bit float", shorten(n), bits)
		}
	}
	return nil
}

func numberError(n string, err error, want, bounds string) error {
	if errors.Is(err, strconv.ErrRange) {
		return fmt.Errorf("number %s is out of range (%s)", shorten(n), bounds)
	}
	return fmt.Errorf("expected %s, got %s", want, shorten(n))
}

// isInteger reports whether s is a non-empty string of digits.
func isInteger(s string) bool {
	return s != "" && !slices.ContainsFunc([]byte(s), func(c byte) bool { return c < '0' || c > '9' })
}

// shorten cuts a number literal for a message.
func shorten(n string) string {
	if len(n) > 40 {
		return n[:40] + "…"
	}
	return n
}

// checkMapKey checks that key converts to a map key of type t as
// encoding/json converts it: integer kinds parse it (unless they are text
// unmarshalers); strings and text unmarshalers are left to encoding/json.
func checkMapKey(t reflect.Type, key string) error {
	sh := kindShapes[t.Kind()]
	if (sh != shapeInt && sh != shapeUint) || reflect.PointerTo(t).Implements(textUnmarshaler) {
		return nil
	}
	return checkNumber(&schema{shape: sh, base: t}, key)
}

// keySet remembers the keys of one object: a short list, a map once the
// object grows.
type keySet struct {
	list [][]byte
	m    map[string]struct{}
}

// keySetListMax is how many keys keySet keeps in its list.
const keySetListMax = 16

// add records key and reports whether it was new.
func (k *keySet) add(key []byte) bool {
	if k.m != nil {
		if _, dup := k.m[string(key)]; dup {
			return false
		}
		k.m[string(key)] = struct{}{}
		return true
	}
	for _, s := range k.list {
		if bytes.Equal(s, key) {
			return false
		}
	}
	k.list = append(k.list, key)
	if len(k.list) > keySetListMax {
		k.m = make(map[string]struct{}, 2*len(k.list))
		for _, s := range k.list {
			k.m[string(s)] = struct{}{}
		}
		k.list = nil
	}
	return true
}

// isWord reports whether key is a non-empty run of at most maxKeyShown
// ASCII letters, digits, '_' and '-', shown in a path without quotes.
func isWord(key string) bool {
	if key == "" || len(key) > maxKeyShown {
		return false
	}
	for i := range len(key) {
		c := key[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
