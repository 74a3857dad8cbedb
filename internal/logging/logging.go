// Package logging builds the slog loggers both binaries use.
package logging

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// The defaults of every command's log level and format settings.
const (
	DefaultLevel  = "info"
	DefaultFormat = "text"
)

// New returns a logger writing to w at level ("debug", "info", "warn",
// "error") in format ("text" or "json"). In both formats a duration is
// written as Go prints it ("30s", "1.5ms"), never as nanoseconds.
func New(w io.Writer, level, format string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lvl, ReplaceAttr: durationString}
	switch strings.ToLower(format) {
	case "text", "":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	default:
		return nil, fmt.Errorf("log format %q: want text or json", format)
	}
}

// durationString is a slog.HandlerOptions.ReplaceAttr that writes
// durations as strings: the JSON handler would write nanoseconds.
func durationString(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		a.Value = slog.StringValue(a.Value.Duration().String())
	}
	return a
}
