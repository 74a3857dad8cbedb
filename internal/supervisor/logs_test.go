package supervisor

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"testing"
)

func TestLineLoggerKeepsPluginLevelsAndFields(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		level string
		msg   string
		attrs map[string]any
	}{
		{"slog json", `{"time":"2026-01-01T00:00:00Z","level":"WARN","msg":"agent drain incomplete","err":"boom"}` + "\n",
			"WARN", "agent drain incomplete", map[string]any{"err": "boom"}},
		{"plain text", "panic: something\n", "INFO", "panic: something", nil},
		{"json without msg", `{"a":1}` + "\n", "INFO", `{"a":1}`, nil},
		{"crlf", "hello\r\n", "INFO", "hello", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			w := newLineLogger(slog.New(slog.NewJSONHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug})), "stdio")
			half := len(tt.in) / 2
			_, _ = w.Write([]byte(tt.in[:half]))
			if out.Len() != 0 && half < len(tt.in)-1 {
				t.Fatalf("logged a partial line: %s", out.String())
			}
			_, _ = w.Write([]byte(tt.in[half:]))
			var rec map[string]any
			if err := json.Unmarshal(out.Bytes(), &rec); err != nil {
				t.Fatalf("output %q: %v", out.String(), err)
			}
			if rec["level"] != tt.level || rec["msg"] != tt.msg || rec["stream"] != "stdio" {
				t.Fatalf("logged %v", rec)
			}
			for k, v := range tt.attrs {
				if rec[k] != v {
					t.Errorf("attr %s = %v, want %v", k, rec[k], v)
				}
			}
		})
	}
}
