package supervisor

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log"
	"log/slog"
	"slices"
	"sort"
	"sync"

	"github.com/hashicorp/go-hclog"
)

// hcLogger adapts a slog.Logger to the hclog.Logger go-plugin logs to.
//
// go-plugin uses named sub-loggers only to re-log the plugin's stderr
// line by line (guessing levels) and to trace its stdio stream. The
// supervisor logs stderr itself through [lineLogger], so named loggers are
// silenced (level Off) and every line is logged exactly once.
type hcLogger struct {
	log    *slog.Logger
	name   string
	silent bool
	args   []any
}

var _ hclog.Logger = (*hcLogger)(nil)

func newHCLogger(log *slog.Logger) *hcLogger {
	return &hcLogger{log: log.With("component", "go-plugin"), name: "go-plugin"}
}

func slogLevel(l hclog.Level) slog.Level {
	switch {
	case l <= hclog.Trace:
		return slog.LevelDebug - 4
	case l == hclog.Debug:
		return slog.LevelDebug
	case l == hclog.Info:
		return slog.LevelInfo
	case l == hclog.Warn:
		return slog.LevelWarn
	}
	return slog.LevelError
}

func (l *hcLogger) enabled(level hclog.Level) bool {
	return !l.silent && l.log.Enabled(context.Background(), slogLevel(level))
}

// Log implements hclog.Logger.
func (l *hcLogger) Log(level hclog.Level, msg string, args ...any) {
	if level == hclog.Off || !l.enabled(level) {
		return
	}
	all := slices.Concat(l.args, args)
	for i := 0; i+1 < len(all); i += 2 {
		// go-plugin's "plugin" is the executable path; ours is the name.
		if all[i] == "plugin" {
			all[i] = "path"
		}
	}
	l.log.Log(context.Background(), slogLevel(level), msg, all...)
}

// Trace implements hclog.Logger.
func (l *hcLogger) Trace(msg string, args ...any) { l.Log(hclog.Trace, msg, args...) }

// Debug implements hclog.Logger.
func (l *hcLogger) Debug(msg string, args ...any) { l.Log(hclog.Debug, msg, args...) }

// Info implements hclog.Logger.
func (l *hcLogger) Info(msg string, args ...any) { l.Log(hclog.Info, msg, args...) }

// Warn implements hclog.Logger.
func (l *hcLogger) Warn(msg string, args ...any) { l.Log(hclog.Warn, msg, args...) }

// Error implements hclog.Logger.
func (l *hcLogger) Error(msg string, args ...any) { l.Log(hclog.Error, msg, args...) }

// IsTrace implements hclog.Logger.
func (l *hcLogger) IsTrace() bool { return l.enabled(hclog.Trace) }

// IsDebug implements hclog.Logger.
func (l *hcLogger) IsDebug() bool { return l.enabled(hclog.Debug) }

// IsInfo implements hclog.Logger.
func (l *hcLogger) IsInfo() bool { return l.enabled(hclog.Info) }

// IsWarn implements hclog.Logger.
func (l *hcLogger) IsWarn() bool { return l.enabled(hclog.Warn) }

// IsError implements hclog.Logger.
func (l *hcLogger) IsError() bool { return l.enabled(hclog.Error) }

// ImpliedArgs implements hclog.Logger.
func (l *hcLogger) ImpliedArgs() []any { return l.args }

// With implements hclog.Logger.
func (l *hcLogger) With(args ...any) hclog.Logger {
	c := *l
	c.args = slices.Concat(l.args, args)
	return &c
}

// Name implements hclog.Logger.
func (l *hcLogger) Name() string { return l.name }

// Named implements hclog.Logger; see the type's documentation.
func (l *hcLogger) Named(name string) hclog.Logger {
	c := *l
	c.name, c.silent = l.name+"."+name, true
	return &c
}

// ResetNamed implements hclog.Logger.
func (l *hcLogger) ResetNamed(name string) hclog.Logger {
	c := *l
	c.name, c.silent = name, true
	return &c
}

// SetLevel implements hclog.Logger; the level is the slog handler's.
func (l *hcLogger) SetLevel(hclog.Level) {}

// GetLevel implements hclog.Logger.
func (l *hcLogger) GetLevel() hclog.Level {
	for _, lvl := range []hclog.Level{hclog.Trace, hclog.Debug, hclog.Info, hclog.Warn, hclog.Error} {
		if l.enabled(lvl) {
			return lvl
		}
	}
	return hclog.Off
}

// StandardLogger implements hclog.Logger.
func (l *hcLogger) StandardLogger(*hclog.StandardLoggerOptions) *log.Logger {
	return slog.NewLogLogger(l.log.Handler(), slog.LevelInfo)
}

// StandardWriter implements hclog.Logger.
func (l *hcLogger) StandardWriter(opts *hclog.StandardLoggerOptions) io.Writer {
	return l.StandardLogger(opts).Writer()
}

// lineLogger is an io.Writer that logs every line written to it at info
// level, tagged with the stream it came from.
type lineLogger struct {
	log *slog.Logger

	mu  sync.Mutex
	buf []byte
}

// maxLine bounds a buffered line; longer ones are logged in pieces.
const maxLine = 64 << 10

func newLineLogger(log *slog.Logger, stream string) *lineLogger {
	return &lineLogger{log: log.With("stream", stream)}
}

// Write implements io.Writer.
func (w *lineLogger) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 && len(w.buf) < maxLine {
			break
		}
		if i < 0 {
			i = len(w.buf)
		}
		if line := bytes.TrimRight(w.buf[:i], "\r"); len(line) > 0 {
			w.logLine(line)
		}
		w.buf = w.buf[min(i+1, len(w.buf)):]
	}
	if len(w.buf) == 0 {
		w.buf = nil
	}
	return len(p), nil
}

// logLine logs one line. A JSON object with a "msg" field (what log/slog's
// and hclog's JSON handlers write) is logged at its own level with its
// fields as attributes; anything else is logged as is at info level.
func (w *lineLogger) logLine(line []byte) {
	var rec map[string]any
	if line[0] != '{' || json.Unmarshal(line, &rec) != nil {
		w.log.Info(string(line))
		return
	}
	msg, ok := rec["msg"].(string)
	if !ok {
		w.log.Info(string(line))
		return
	}
	level := slog.LevelInfo
	if s, ok := rec["level"].(string); ok {
		_ = level.UnmarshalText([]byte(s))
	}
	attrs := make([]slog.Attr, 0, len(rec))
	for k, v := range rec {
		switch k {
		case "msg", "level", "time", "@message", "@level", "@timestamp":
			continue
		}
		attrs = append(attrs, slog.Any(k, v))
	}
	sort.Slice(attrs, func(i, j int) bool { return attrs[i].Key < attrs[j].Key })
	w.log.LogAttrs(context.Background(), level, msg, attrs...)
}
