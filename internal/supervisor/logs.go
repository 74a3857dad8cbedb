package supervisor

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/home-console/client-manager/internal/linesplit"
)

// hcLogger adapts a slog.Logger to the hclog.Logger go-plugin logs to.
//
// go-plugin uses named sub-loggers only to re-log the plugin's stderr
// line by line (guessing levels) and to trace its stdio stream. The
// supervisor logs stderr itself through [newLineLogger], so named loggers are
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

// maxLine bounds a buffered line; longer ones are logged in pieces.
const maxLine = 64 << 10

// newLineLogger returns an io.Writer that logs every line written to it,
// tagged with the stream it came from; see [logLine].
func newLineLogger(log *slog.Logger, stream string) io.Writer {
	log = log.With("stream", stream)
	return linesplit.New(maxLine, func(line []byte) {
		if line = bytes.TrimRight(line, "\r"); len(line) > 0 {
			logLine(log, line)
		}
	})
}

// logLine logs one line of a plugin's output. A JSON object with a
// message (what log/slog's JSON handler writes: "msg", "level", "time";
// or hclog's: "@message", "@level", "@timestamp") is logged with the
// plugin's own level and timestamp and its other fields as attributes;
// anything else is logged as is at info level, timestamped now.
func logLine(log *slog.Logger, line []byte) {
	var rec map[string]any
	if line[0] != '{' || json.Unmarshal(line, &rec) != nil {
		log.Info(string(line))
		return
	}
	msg, ok := field(rec, "msg", "@message")
	if !ok {
		log.Info(string(line))
		return
	}
	level := pluginLevel(rec)
	h := log.Handler()
	if !h.Enabled(context.Background(), level) {
		return
	}
	at := time.Now()
	if s, ok := field(rec, "time", "@timestamp"); ok {
		if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
			at = t
		}
	}
	r := slog.NewRecord(at, level, msg, 0)
	keys := make([]string, 0, len(rec))
	for k := range rec {
		switch k {
		case "msg", "level", "time", "@message", "@level", "@timestamp":
			continue
		}
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		r.AddAttrs(slog.Any(k, rec[k]))
	}
	_ = h.Handle(context.Background(), r)
}

// field returns the first of keys that rec holds as a string.
func field(rec map[string]any, keys ...string) (string, bool) {
	for _, k := range keys {
		if s, ok := rec[k].(string); ok {
			return s, true
		}
	}
	return "", false
}

// pluginLevel is the level a plugin's JSON record names: slog's (DEBUG,
// INFO, WARN, ERROR, optionally with an offset such as "INFO+2") or
// hclog's (trace, debug, info, warn, error); info if none or unknown.
func pluginLevel(rec map[string]any) slog.Level {
	s, ok := field(rec, "level", "@level")
	if !ok {
		return slog.LevelInfo
	}
	if strings.EqualFold(s, "trace") {
		return slog.LevelDebug - 4
	}
	var l slog.Level
	if l.UnmarshalText([]byte(s)) != nil {
		return slog.LevelInfo
	}
	return l
}
