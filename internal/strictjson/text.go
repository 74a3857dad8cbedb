package strictjson

import (
	"bytes"
	"unicode/utf8"
)

// firstBadText returns the offset of the first byte that is not UTF-8 or
// the first escape of a lone UTF-16 surrogate (both of which
// encoding/json turns into U+FFFD), and which of the two it is; -1 if the
// input has neither.
func firstBadText(data []byte) (int, string) {
	bad, detail := -1, ""
	if !utf8.Valid(data) {
		bad, detail = firstInvalidUTF8(data), "invalid UTF-8"
	}
	if i := firstLoneSurrogate(data); i >= 0 && (bad < 0 || i < bad) {
		bad, detail = i, "escape of a lone UTF-16 surrogate "+string(data[i:i+6])
	}
	return bad, detail
}

func firstInvalidUTF8(data []byte) int {
	for i := 0; i < len(data); {
		r, n := utf8.DecodeRune(data[i:])
		if r == utf8.RuneError && n == 1 {
			return i
		}
		i += n
	}
	return -1
}

// firstLoneSurrogate returns the offset of the first \uXXXX escape of a
// surrogate that is not a high one followed by an escaped low one, or -1.
// In JSON a backslash only occurs in strings, where it starts an escape,
// so the scan needs no other context.
func firstLoneSurrogate(data []byte) int {
	for i := 0; ; {
		j := bytes.IndexByte(data[i:], '\\')
		if j < 0 {
			return -1
		}
		i += j
		r, ok := escapedRune(data[i:])
		switch {
		case !ok:
			i += 2 // another escape (or a syntax error found later)
		case r >= 0xD800 && r < 0xDC00:
			if low, ok := escapedRune(data[i+6:]); ok && low >= 0xDC00 && low < 0xE000 {
				i += 12
				continue
			}
			return i
		case r >= 0xDC00 && r < 0xE000:
			return i
		default:
			i += 6
		}
		if i >= len(data) {
			return -1
		}
	}
}

// escapedRune decodes a \uXXXX escape at the start of b.
func escapedRune(b []byte) (rune, bool) {
	if len(b) < 6 || b[0] != '\\' || b[1] != 'u' {
		return 0, false
	}
	var r rune
	for _, c := range b[2:6] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}
