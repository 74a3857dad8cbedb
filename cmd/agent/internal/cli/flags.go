package cli

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
)

// envFlags registers flags whose defaults come from environment variables:
// a flag given on the command line wins over its variable, which wins over
// the built-in default.
type envFlags struct {
	fs     *flag.FlagSet
	getenv func(string) string
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
