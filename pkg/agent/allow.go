package agent

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
)

// AllowList is the set of executables an agent runs. An entry is either a
// bare command name ("uname"), which allows that name as given and is
// resolved through PATH when run, or an absolute path ("/usr/bin/uname"),
// which allows exactly that path. A command given with a path separator is
// allowed only if that exact path is listed; nothing is matched by prefix,
// pattern or after cleaning the path. The zero value allows nothing.
// An AllowList is immutable and safe for concurrent use.
type AllowList struct {
	names []string
}

// NewAllowList returns an allow-list of the given entries. Empty entries are
// ignored, duplicates collapsed; the order is kept for [AllowList.Names].
// An entry with a path separator must be an absolute path: a relative one
// would depend on the agent's working directory, and is an error.
func NewAllowList(entries ...string) (AllowList, error) {
	var names []string
	for _, e := range entries {
		e = strings.TrimSpace(e)
		if e == "" || slices.Contains(names, e) {
			continue
		}
		if strings.ContainsRune(e, 0) || strings.ContainsAny(e, "/"+string(filepath.Separator)) && !filepath.IsAbs(e) {
			return AllowList{}, fmt.Errorf("allow-list entry %q: use a command name or an absolute path", e)
		}
		names = append(names, e)
	}
	return AllowList{names: names}, nil
}

// Names returns a copy of the entries, as reported in the hello message.
func (l AllowList) Names() []string { return slices.Clone(l.names) }

// Check returns nil if command may run, or an error wrapping [ErrNotAllowed]
// that names the command.
func (l AllowList) Check(command string) error {
	if command == "" {
		return fmt.Errorf("empty command name: %w", ErrNotAllowed)
	}
	if strings.ContainsRune(command, 0) || !slices.Contains(l.names, command) {
		return fmt.Errorf("command %q is %w", command, ErrNotAllowed)
	}
	return nil
}
