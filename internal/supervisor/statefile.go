package supervisor

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/home-console/client-manager/internal/atomicfile"
)

// recordVersion is the format version of a re-attach record.
const recordVersion = 1

// record is what the runtime keeps on disk about a running plugin process,
// so that the next runtime can re-attach to it if this one dies without
// stopping it. It holds the process's proxy token: the file is private
// (mode 0600).
type record struct {
	Version int    `json:"version"`
	Plugin  string `json:"plugin"`

	// PID and StartTime (clock ticks after boot, /proc/<pid>/stat field
	// 22) identify the process; Binary is its executable (symlinks
	// resolved, as /proc/<pid>/exe shows it), with the size and
	// modification time the file had at launch (for operators: the
	// runtime compares the file itself and its size).
	PID           int       `json:"pid"`
	StartTime     uint64    `json:"start_time"`
	Binary        string    `json:"binary"`
	BinarySize    int64     `json:"binary_size"`
	BinaryModTime time.Time `json:"binary_mod_time"`
	// Launch is a digest of the manifest fields the process was launched
	// with; a later runtime replaces the process if they changed.
	Launch string `json:"launch"`

	// go-plugin's ReattachConfig.
	Protocol        string `json:"protocol"`
	ProtocolVersion int    `json:"protocol_version"`
	Network         string `json:"network"`
	Address         string `json:"address"`

	InstanceID  string    `json:"instance_id"`
	HTTPAddress string    `json:"http_address,omitempty"`
	ProxyToken  string    `json:"proxy_token,omitempty"`
	StartedAt   time.Time `json:"started_at,omitzero"`
	// Restarts and RestartTimes carry the restart counter and the restart
	// policy's window over to the next runtime.
	Restarts     int         `json:"restarts"`
	RestartTimes []time.Time `json:"restart_times,omitempty"`
	// Stopping is set once a stop of the process began.
	Stopping bool `json:"stopping,omitempty"`
}

// stateStore keeps one record per plugin in <dir>/<plugin>.json. A nil
// *stateStore keeps nothing.
type stateStore struct {
	dir string
}

// newStateStore returns the store under stateDir, nil if stateDir is "".
func newStateStore(stateDir string) *stateStore {
	if stateDir == "" {
		return nil
	}
	return &stateStore{dir: filepath.Join(stateDir, "plugins")}
}

func (st *stateStore) path(plugin string) string {
	return filepath.Join(st.dir, plugin+".json")
}

// load returns the record of plugin, nil if there is none.
func (st *stateStore) load(plugin string) (*record, error) {
	if st == nil {
		return nil, nil
	}
	data, err := os.ReadFile(st.path(plugin))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read re-attach record: %w", err)
	}
	var r record
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("re-attach record %s: %w", st.path(plugin), err)
	}
	switch {
	case r.Version != recordVersion:
		return nil, fmt.Errorf("re-attach record %s: format version %d, want %d", st.path(plugin), r.Version, recordVersion)
	case r.Plugin != plugin || r.PID <= 0:
		return nil, fmt.Errorf("re-attach record %s: not a record of plugin %s", st.path(plugin), plugin)
	}
	return &r, nil
}

// save writes r atomically (see [atomicfile.Write]), mode 0600.
func (st *stateStore) save(r *record) error {
	if st == nil {
		return nil
	}
	r.Version = recordVersion
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode re-attach record: %w", err)
	}
	if err := os.MkdirAll(st.dir, 0o700); err != nil {
		return fmt.Errorf("re-attach records: %w", err)
	}
	if err := atomicfile.Write(st.path(r.Plugin), append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("re-attach record: %w", err)
	}
	return nil
}

// remove deletes the record of plugin, if any.
func (st *stateStore) remove(plugin string) error {
	if st == nil {
		return nil
	}
	if err := os.Remove(st.path(plugin)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove re-attach record: %w", err)
	}
	return nil
}
