package sessions

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/home-console/client-manager/internal/atomicfile"
	"github.com/home-console/client-manager/internal/fleet"
)

// Suffixes of a session's files in the recordings directory.
const (
	castSuffix = ".cast"
	metaSuffix = ".json"
)

// reasonRestarted ends the sessions a previous run left active.
const reasonRestarted = "client manager restarted"

// recordings is the directory of session records: <id>.json holds the
// fleet.TerminalSession (written atomically at start and end), <id>.cast
// its recording. It keeps the records in memory too.
type recordings struct {
	dir string
	log *slog.Logger

	mu      sync.Mutex
	records map[string]fleet.TerminalSession
}

// recover loads the records; active ones (a previous run's) are ended.
func (s *recordings) recover(now time.Time) error {
	s.records = map[string]fleet.TerminalSession{}
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("sessions: %w", err)
	}
	for _, e := range entries {
		id, ok := strings.CutSuffix(e.Name(), metaSuffix)
		if !ok || e.IsDir() {
			continue
		}
		rec, err := s.load(id)
		if err != nil {
			s.log.Warn("session record unreadable; skipped", "file", e.Name(), "err", err)
			continue
		}
		if rec.State == fleet.SessionActive {
			rec.State, rec.EndedAt, rec.EndReason = fleet.SessionEnded, &now, reasonRestarted
			rec.RecordingBytes = s.castSize(id)
			s.write(rec)
		}
		s.records[id] = rec
	}
	return nil
}

func (s *recordings) load(id string) (fleet.TerminalSession, error) {
	var rec fleet.TerminalSession
	data, err := os.ReadFile(filepath.Join(s.dir, id+metaSuffix))
	if err == nil {
		err = json.Unmarshal(data, &rec)
	}
	if err == nil && rec.ID != id {
		err = errors.New("id does not match the file name")
	}
	return rec, err
}

func (s *recordings) castPath(id string) string { return filepath.Join(s.dir, id+castSuffix) }

func (s *recordings) castSize(id string) int64 {
	fi, err := os.Stat(s.castPath(id))
	if err != nil {
		return 0
	}
	return fi.Size()
}

// write stores rec (memory and file); a failed write is logged.
func (s *recordings) write(rec fleet.TerminalSession) {
	s.mu.Lock()
	if s.records != nil {
		s.records[rec.ID] = rec
	}
	s.mu.Unlock()
	data, _ := json.Marshal(rec)
	if err := atomicfile.Write(filepath.Join(s.dir, rec.ID+metaSuffix), data, 0o600); err != nil {
		s.log.Error("session record not written", "session_id", rec.ID, "agent_id", rec.AgentID, "err", err)
	}
}

// get returns the record of id.
func (s *recordings) get(id string) (fleet.TerminalSession, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, ok := s.records[id]
	return rec, ok
}

// list returns the records of agentID (all when empty), newest first, at
// most limit.
func (s *recordings) list(agentID string, limit int) []fleet.TerminalSession {
	s.mu.Lock()
	out := make([]fleet.TerminalSession, 0, len(s.records))
	for _, r := range s.records {
		if agentID == "" || r.AgentID == agentID {
			out = append(out, r)
		}
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b fleet.TerminalSession) int { return b.StartedAt.Compare(a.StartedAt) })
	if len(out) > limit {
		out = out[:limit]
	}
	return out
}

// open opens id's recording for reading.
func (s *recordings) open(id string) (io.ReadSeekCloser, error) {
	f, err := os.Open(s.castPath(id))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fleet.Errorf(fleet.CodeNotFound, "session %q has no recording", id)
	}
	return f, err
}

// prune deletes ended sessions older than retention (by end time), then
// the oldest ended ones while the recordings exceed maxTotal.
func (s *recordings) prune(now time.Time, retention time.Duration, maxTotal int64) {
	s.mu.Lock()
	var ended []fleet.TerminalSession
	var total int64
	for _, r := range s.records {
		total += r.RecordingBytes
		if r.State == fleet.SessionEnded {
			ended = append(ended, r)
		}
	}
	s.mu.Unlock()
	slices.SortFunc(ended, func(a, b fleet.TerminalSession) int { return a.StartedAt.Compare(b.StartedAt) })
	for _, r := range ended {
		if now.Sub(*r.EndedAt) <= retention && total <= maxTotal {
			continue
		}
		s.remove(r.ID)
		total -= r.RecordingBytes
	}
}

// remove deletes a session's files and record.
func (s *recordings) remove(id string) {
	for _, suffix := range []string{castSuffix, metaSuffix} {
		if err := os.Remove(filepath.Join(s.dir, id+suffix)); err != nil && !errors.Is(err, os.ErrNotExist) {
			s.log.Warn("recording not deleted", "session_id", id, "err", err)
		}
	}
	s.mu.Lock()
	delete(s.records, id)
	s.mu.Unlock()
}

// ListSessions returns the sessions of agentID (all agents when empty),
// newest first, at most limit; running ones with their counters now.
func (m *Manager) ListSessions(agentID string, limit int) []fleet.TerminalSession {
	out := m.store.list(agentID, limit)
	for i, rec := range out {
		out[i] = m.current(rec)
	}
	return out
}

// GetSession returns the session id.
func (m *Manager) GetSession(id string) (fleet.TerminalSession, bool) {
	rec, ok := m.store.get(id)
	if !ok {
		return rec, false
	}
	return m.current(rec), true
}

// current is rec with a running session's counters.
func (m *Manager) current(rec fleet.TerminalSession) fleet.TerminalSession {
	m.mu.Lock()
	t, live := m.live[rec.ID]
	m.mu.Unlock()
	if live {
		return t.record()
	}
	return rec
}

// OpenRecording opens the asciicast v2 recording of session id; the error
// is fleet.CodeNotFound when there is none.
func (m *Manager) OpenRecording(id string) (io.ReadSeekCloser, error) {
	if _, ok := m.store.get(id); !ok {
		return nil, fleet.Errorf(fleet.CodeNotFound, "session %q not found", id)
	}
	return m.store.open(id)
}
