package supervisor

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// lineTests are lines of plugin output and how the runtime logs them.
var lineTests = []struct {
	name  string
	in    string
	level string
	msg   string
	time  string // "" when the record is stamped on arrival
	attrs map[string]any
}{
	{"slog json", `{"time":"2026-01-01T00:00:00.123456789Z","level":"WARN","msg":"agent drain incomplete","err":"boom"}` + "\n",
		"WARN", "agent drain incomplete", "2026-01-01T00:00:00.123456789Z", map[string]any{"err": "boom"}},
	{"slog level offset", `{"time":"2026-01-01T00:00:00+02:00","level":"DEBUG-4","msg":"m"}` + "\n",
		"DEBUG-4", "m", "2025-12-31T22:00:00Z", nil},
	{"hclog json", `{"@level":"error","@message":"plugin init","@timestamp":"2026-02-03T04:05:06.000007Z","path":"/x"}` + "\n",
		"ERROR", "plugin init", "2026-02-03T04:05:06.000007Z", map[string]any{"path": "/x"}},
	{"hclog trace", `{"@level":"trace","@message":"t","@timestamp":"2026-02-03T04:05:06Z"}` + "\n",
		"DEBUG-4", "t", "2026-02-03T04:05:06Z", nil},
	{"unknown level and bad time", `{"time":"yesterday","level":"LOUD","msg":"m"}` + "\n", "INFO", "m", "", nil},
	{"plain text", "panic: something\n", "INFO", "panic: something", "", nil},
	{"json without msg", `{"a":1}` + "\n", "INFO", `{"a":1}`, "", nil},
	{"crlf", "hello\r\n", "INFO", "hello", "", nil},
}

func TestLineLoggerKeepsPluginLevelsTimesAndFields(t *testing.T) {
	for _, tt := range lineTests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			w := newLineLogger(slog.New(slog.NewJSONHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug - 4})), "stdio")
			half := len(tt.in) / 2
			before := time.Now()
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
			at, err := time.Parse(time.RFC3339Nano, rec["time"].(string))
			switch {
			case err != nil:
				t.Fatalf("time %v: %v", rec["time"], err)
			case tt.time == "" && at.Before(before.Add(-time.Second)):
				t.Errorf("time %v, want about now", at)
			case tt.time != "" && !at.Equal(mustTime(t, tt.time)):
				t.Errorf("time %v, want the plugin's %s", at, tt.time)
			}
			for k, v := range tt.attrs {
				if rec[k] != v {
					t.Errorf("attr %s = %v, want %v", k, rec[k], v)
				}
			}
			for _, k := range []string{"@level", "@message", "@timestamp"} {
				if _, ok := rec[k]; ok {
					t.Errorf("hclog key %s passed on as an attribute: %v", k, rec)
				}
			}
		})
	}
}

func TestLineLoggerDropsRecordsBelowLevel(t *testing.T) {
	var out bytes.Buffer
	w := newLineLogger(slog.New(slog.NewJSONHandler(&out, nil)), "stdio")
	_, _ = w.Write([]byte(`{"level":"DEBUG","msg":"quiet"}` + "\n" + `{"level":"ERROR","msg":"loud"}` + "\n"))
	if got := out.String(); strings.Contains(got, "quiet") || !strings.Contains(got, "loud") {
		t.Fatalf("logged %q: want only the error record", got)
	}
}

func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	at, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatal(err)
	}
	return at
}
