package manifest

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"

	"github.com/home-console/client-manager/internal/strictjson"
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

// decode strictly decodes one JSON object with strictjson.Decode (unknown,
// repeated or wrongly cased fields, wrong types, numbers out of range,
// invalid UTF-8 and anything after the object are errors) and says where
// the defect is by line and column.
func decode(data []byte) (*rawManifest, error) {
	var raw rawManifest
	if err := strictjson.Decode(data, &raw); err != nil {
		return nil, describeJSONError(data, err)
	}
	return &raw, nil
}

func describeJSONError(data []byte, err error) error {
	var e *strictjson.Error
	if !errors.As(err, &e) {
		return errors.New("invalid JSON: empty file") // strictjson.ErrEmpty
	}
	line, col := position(data, e.Offset)
	switch e.Kind {
	case strictjson.KindUnexpectedEnd:
		return fmt.Errorf("invalid JSON: unexpected end of file at line %d, column %d", line, col)
	case strictjson.KindSyntax:
		return fmt.Errorf("invalid JSON at line %d, column %d: %s", line, col, e.Detail)
	case strictjson.KindTrailingData:
		return fmt.Errorf("invalid JSON: unexpected data after the manifest object at line %d, column %d", line, col)
	case strictjson.KindType, strictjson.KindValue:
		return fmt.Errorf("field %s: %s (line %d, column %d)", cmp.Or(e.Path, "(top level)"), e.Detail, line, col)
	}
	return fmt.Errorf("invalid manifest at line %d, column %d: %v", line, col, err)
}

// position converts a byte offset in data to a 1-based line and column.
func position(data []byte, offset int64) (line, col int) {
	offset = min(max(offset, 0), int64(len(data)))
	before := data[:offset]
	line = bytes.Count(before, []byte{'\n'}) + 1
	col = int(offset) - (bytes.LastIndexByte(before, '\n') + 1) + 1
	return line, col
}
