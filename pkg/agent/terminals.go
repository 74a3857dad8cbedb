package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"slices"
	"sync"

	"github.com/home-console/client-manager/internal/atomicfile"
	"github.com/home-console/client-manager/pkg/agent/terminal"
)

// terminalStateFile is the content of [Config.TerminalStatePath].
type terminalStateFile struct {
	Sessions []terminal.SessionID `json:"sessions"`
}

// terminalState records the terminal sessions running now in a file, so
// that the next agent process can end those this one could not (it was
// killed). Without a path it records nothing. Safe for concurrent use.
type terminalState struct {
	path string
	log  *slog.Logger

	mu  sync.Mutex
	ids []terminal.SessionID
}

// cleanup kills what is left of the sessions recorded by a previous agent
// process and empties the file. A missing file means there are none; an
// unreadable one is reported and replaced.
func (ts *terminalState) cleanup() error {
	if ts.path == "" {
		return nil
	}
	b, err := os.ReadFile(ts.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("terminal state: %w", err)
	}
	var st terminalStateFile
	if err := json.Unmarshal(b, &st); err != nil {
		ts.log.Warn("terminal state file unreadable; replacing it", "path", ts.path, "err", err)
	}
	for _, id := range st.Sessions {
		if n := terminal.KillOrphan(id); n > 0 {
			ts.log.Warn("killed a terminal session left by a previous agent process", "pid", id.PID, "processes", n)
		}
	}
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.saveLocked()
}

// add records a session that started.
func (ts *terminalState) add(id terminal.SessionID) {
	if ts.path == "" {
		return
	}
	ts.mu.Lock()
	defer ts.mu.Unlock()
	ts.ids = append(ts.ids, id)
	ts.logSave()
}

// remove forgets a session that ended.
func (ts *terminalState) remove(id terminal.SessionID) {
	if ts.path == "" {
		return
	}
	ts.mu.Lock()
	defer ts.mu.Unlock()
	ts.ids = slices.DeleteFunc(ts.ids, func(x terminal.SessionID) bool { return x == id })
	ts.logSave()
}

func (ts *terminalState) logSave() {
	if err := ts.saveLocked(); err != nil {
		ts.log.Error("terminal state not recorded", "path", ts.path, "err", err)
	}
}

// saveLocked rewrites the file with ts.ids; ts.mu is held.
func (ts *terminalState) saveLocked() error {
	b, err := json.Marshal(terminalStateFile{Sessions: append([]terminal.SessionID{}, ts.ids...)})
	if err != nil {
		return fmt.Errorf("terminal state: %w", err)
	}
	return atomicfile.Write(ts.path, b, 0o600)
}
