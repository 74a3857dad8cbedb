package logging

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestNew(t *testing.T) {
	tests := []struct {
		level, format string
		wantErr       string
		check         func(t *testing.T, out string)
	}{
		{"info", "text", "", func(t *testing.T, out string) {
			if !strings.Contains(out, `msg=shown`) || strings.Contains(out, "hidden") {
				t.Errorf("text output %q", out)
			}
		}},
		{"debug", "json", "", func(t *testing.T, out string) {
			lines := strings.Split(strings.TrimSpace(out), "\n")
			var rec map[string]any
			if len(lines) != 2 || json.Unmarshal([]byte(lines[1]), &rec) != nil || rec["msg"] != "shown" {
				t.Errorf("json output %q", out)
			}
		}},
		{"warn", "", "", func(t *testing.T, out string) {
			if out != "" {
				t.Errorf("warn level logged info: %q", out)
			}
		}},
		{"loud", "text", "log level", nil},
		{"info", "xml", "log format", nil},
	}
	for _, tt := range tests {
		t.Run(tt.level+"/"+tt.format, func(t *testing.T) {
			var buf bytes.Buffer
			log, err := New(&buf, tt.level, tt.format)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			log.Debug("hidden")
			log.Info("shown")
			tt.check(t, buf.String())
		})
	}
}

func TestDurationsPrintAsDurations(t *testing.T) {
	for _, format := range []string{"text", "json"} {
		var buf bytes.Buffer
		log, err := New(&buf, "info", format)
		if err != nil {
			t.Fatal(err)
		}
		log.Info("stopping", "timeout", 30*time.Second, "any", any(1500*time.Microsecond),
			slog.Group("g", "wait", 2*time.Minute))
		out := buf.String()
		for _, want := range []string{"30s", "1.5ms", "2m0s"} {
			if !strings.Contains(out, want) {
				t.Errorf("%s: %q lacks %q", format, out, want)
			}
		}
		if strings.Contains(out, "30000000000") {
			t.Errorf("%s: a duration in nanoseconds: %q", format, out)
		}
	}
}
