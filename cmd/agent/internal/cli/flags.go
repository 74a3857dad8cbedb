package cli

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// envFlags registers flags whose defaults come from environment variables:
// a flag given on the command line wins over its variable, which wins over
// the built-in default. A variable that does not parse is recorded in errs.
type envFlags struct {
	fs     *flag.FlagSet
	getenv func(string) string
	errs   *[]error
}

// fromEnv parses env's value, if set, with parse, recording a failure.
func (e envFlags) fromEnv(env string, parse func(string) error) {
	v := e.getenv(env)
	if v == "" {
		return
	}
	if err := parse(v); err != nil && e.errs != nil {
		*e.errs = append(*e.errs, fmt.Errorf("%s=%q: %w", env, v, err))
	}
}

func (e envFlags) bool(p *bool, name, env string, def bool, usage string) {
	e.fromEnv(env, func(v string) (err error) { def, err = strconv.ParseBool(v); return err })
	e.fs.BoolVar(p, name, def, usage+" (env "+env+")")
}

func (e envFlags) int(p *int, name, env string, def int, usage string) {
	e.fromEnv(env, func(v string) (err error) { def, err = strconv.Atoi(v); return err })
	e.fs.IntVar(p, name, def, usage+" (env "+env+")")
}

func (e envFlags) int64(p *int64, name, env string, def int64, usage string) {
	e.fromEnv(env, func(v string) (err error) { def, err = strconv.ParseInt(v, 10, 64); return err })
	e.fs.Int64Var(p, name, def, usage+" (env "+env+")")
}

func (e envFlags) duration(p *time.Duration, name, env string, def time.Duration, usage string) {
	e.fromEnv(env, func(v string) (err error) { def, err = time.ParseDuration(v); return err })
	e.fs.DurationVar(p, name, def, usage+" (env "+env+")")
}

// list is a repeatable flag; its variable holds the values separated by
// the system's path list separator (":" on Unix). Flags given replace the
// variable's values.
func (e envFlags) list(p *[]string, name, env, usage string) {
	if v := e.getenv(env); v != "" {
		*p = filepath.SplitList(v)
	}
	e.fs.Var(&listFlag{p: p}, name, usage+" (repeatable; env "+env+", "+string(os.PathListSeparator)+"-separated)")
}

// listFlag is a flag.Value appending to a list, replacing its defaults at
// the first Set.
type listFlag struct {
	p   *[]string
	set bool
}

func (l *listFlag) String() string {
	if l.p == nil {
		return ""
	}
	return strings.Join(*l.p, string(os.PathListSeparator))
}

func (l *listFlag) Set(v string) error {
	if !l.set {
		*l.p, l.set = nil, true
	}
	*l.p = append(*l.p, v)
	return nil
}

func (e envFlags) string(p *string, name, env, def, usage string) {
	if v := e.getenv(env); v != "" {
		def = v
	}
	e.fs.StringVar(p, name, def, usage+" (env "+env+")")
}

// secret is string for a secret (a token): its variable's value is used
// the same way but never shown as the flag's default in the usage.
func (e envFlags) secret(p *string, name, env, usage string) {
	e.fs.StringVar(p, name, "", usage+" (env "+env+")")
	*p = e.getenv(env) // after StringVar, which sets the default; a flag given wins
}

// parseLabels parses "k=v,k=v" into a map; empty input gives nil.
func parseLabels(s string) (map[string]string, error) {
	var labels map[string]string
	for _, pair := range splitList(s) {
		k, v, ok := strings.Cut(pair, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, fmt.Errorf("label %q: want key=value", pair)
		}
		if labels == nil {
			labels = make(map[string]string)
		}
		labels[k] = strings.TrimSpace(v)
	}
	return labels, nil
}

// splitList splits a comma-separated list, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// readToken returns the token itself, or the trimmed content of the file
// named after a leading "@".
func readToken(v string) (string, error) {
	path, isFile := strings.CutPrefix(v, "@")
	if !isFile {
		return strings.TrimSpace(v), nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("enrollment token file: %w", err)
	}
	token := strings.TrimSpace(string(b))
	if token == "" {
		return "", fmt.Errorf("enrollment token file %s is empty", path)
	}
	return token, nil
}

// defaultCredentialFile is $XDG_STATE_HOME/cm-agent/credential.json, or
// ~/.local/state/cm-agent/credential.json.
func defaultCredentialFile(getenv func(string) string) string {
	if dir := getenv("XDG_STATE_HOME"); filepath.IsAbs(dir) {
		return filepath.Join(dir, "cm-agent", "credential.json")
	}
	home := getenv("HOME")
	if home == "" {
		home, _ = os.UserHomeDir()
	}
	return filepath.Join(home, ".local", "state", "cm-agent", "credential.json")
}

// parseLevel maps a level name to a slog level.
func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return l, errors.New("log level must be debug, info, warn or error")
	}
	return l, nil
}
