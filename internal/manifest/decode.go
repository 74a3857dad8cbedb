package manifest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// rawManifest is plugin.json as written. Pointers tell a field left out
// from one set to its zero value.
type rawManifest struct {
	Name         string            `json:"name"`
	Version      string            `json:"version"`
	Description  string            `json:"description"`
	Dependencies []string          `json:"dependencies"`
	Command      string            `json:"command"`
	Args         []string          `json:"args"`
	Env          map[string]string `json:"env"`
	Enabled      *bool             `json:"enabled"`
	Restart      *rawRestart       `json:"restart"`
	StopTimeout  *string           `json:"stop_timeout"`
	StartTimeout *string           `json:"start_timeout"`
	SHA256       string            `json:"sha256"`
	Mount        *string           `json:"mount"`
}

type rawRestart struct {
	Policy         string  `json:"policy"`
	InitialBackoff *string `json:"initial_backoff"`
	MaxBackoff     *string `json:"max_backoff"`
	MaxRestarts    *int    `json:"max_restarts"`
	Window         *string `json:"window"`
}

// decode strictly decodes one JSON object: unknown fields, wrong types and
// anything after the object are errors that point at their position.
func decode(data []byte) (*rawManifest, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var raw rawManifest
	if err := dec.Decode(&raw); err != nil {
		return nil, describeJSONError(data, dec, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		line, col := position(data, dec.InputOffset())
		return nil, fmt.Errorf("invalid JSON: unexpected data after the manifest object at line %d, column %d", line, col)
	}
	return &raw, nil
}

func describeJSONError(data []byte, dec *json.Decoder, err error) error {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.Is(err, io.EOF):
		return errors.New("invalid JSON: empty file")
	case errors.Is(err, io.ErrUnexpectedEOF):
		line, col := position(data, int64(len(data)))
		return fmt.Errorf("invalid JSON: unexpected end of file at line %d, column %d", line, col)
	case errors.As(err, &syntax):
		// Offset counts the offending byte.
		line, col := position(data, syntax.Offset-1)
		return fmt.Errorf("invalid JSON at line %d, column %d: %s", line, col, syntax.Error())
	case errors.As(err, &typ):
		line, col := position(data, typ.Offset)
		return fmt.Errorf("field %s: expected %s, got JSON %s (line %d, column %d)",
			typ.Field, typ.Type, typ.Value, line, col)
	default:
		// Unknown fields end up here; the decoder has read up to them.
		line, col := position(data, dec.InputOffset())
		return fmt.Errorf("invalid manifest near line %d, column %d: %s", line, col, trimJSONPrefix(err.Error()))
	}
}

// position converts a byte offset in data to a 1-based line and column.
func position(data []byte, offset int64) (line, col int) {
	offset = min(max(offset, 0), int64(len(data)))
	before := data[:offset]
	line = bytes.Count(before, []byte{'\n'}) + 1
	col = int(offset) - (bytes.LastIndexByte(before, '\n') + 1) + 1
	return line, col
}

func trimJSONPrefix(s string) string {
	const p = "json: "
	if len(s) > len(p) && s[:len(p)] == p {
		return s[len(p):]
	}
	return s
}
