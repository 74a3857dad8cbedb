package agent

import (
	"bufio"
	"bytes"
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
	"github.com/home-console/client-manager/internal/dirlock"
	"github.com/home-console/client-manager/pkg/agentproto"
)

// Journal limits and the errors of commands it reports on its own.
const (
	// minCompactBytes is the journal size beyond which it is compacted at
	// run time (or twice its size after the last compaction, if larger).
	minCompactBytes = 4 << 20
	// restartedError is the error of a command that was running when a
	// previous agent process died.
	restartedError = "agent restarted while the command was running; not run again"
	// ackedBeforeError is the error of the placeholder result remembered
	// for a command acknowledged before the agent restarted.
	ackedBeforeError = "already run before the agent restarted; its result was acknowledged and is no longer held"
)

// Kinds of journal records.
const (
	recStarted = "started"
	recResult  = "result"
	recAcked   = "acked"
)

var errJournalClosed = errors.New("journal: closed")

// commandJournal records the progress of commands. The agent calls it
// without holding its own lock.
type commandJournal interface {
	// Started records that command id is about to be started.
	Started(id string, at time.Time) error
	// Finished records a command's final result, before it is sent.
	Finished(res agentproto.CommandResult) error
	// Acked records that the server acknowledged command id's result.
	Acked(id string) error
}

// memoryOnly is the commandJournal of an agent without a journal file: it
// records nothing, and the agent forgets everything when its process ends.
type memoryOnly struct{}

func (memoryOnly) Started(string, time.Time) error         { return nil }
func (memoryOnly) Finished(agentproto.CommandResult) error { return nil }
func (memoryOnly) Acked(string) error                      { return nil }

// journalRecord is one line of the journal file.
type journalRecord struct {
	Rec    string                    `json:"rec"`
	ID     string                    `json:"id,omitempty"`
	At     time.Time                 `json:"at,omitzero"`
	Result *agentproto.CommandResult `json:"result,omitempty"`
}

// journal is an append-only JSON Lines file that lets an agent process
// remember its commands across restarts: which started, their results until
// acknowledged, and the ids of the last acknowledged ones. It keeps the
// state the file describes in memory, to compact the file. It belongs to
// one agent at a time: openJournal locks it. Its methods are safe for
// concurrent use.
type journal struct {
	path string
	log  *slog.Logger
	lock *dirlock.Lock // held from openJournal to Close

	mu        sync.Mutex
	f         *os.File // nil once closed
	size      int64
	compactAt int64
	torn      bool // the last write may have left a partial line
	running   map[string]time.Time
	unacked   map[string]agentproto.CommandResult
	acked     []string // oldest first, at most rememberedResults
}

// openJournal opens the journal file at path, creating it (mode 0600, and
// its directory with mode 0700) if needed, after taking the exclusive lock
// path+".lock" (internal/dirlock), held until Close. When another agent, in
// this process or another, holds the lock, the error matches
// [ErrJournalInUse] and wraps a *dirlock.HeldError naming the holder's pid.
// Call Replay before anything else.
func openJournal(path string, log *slog.Logger) (*journal, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	lock, err := dirlock.Acquire(path + ".lock")
	if errors.Is(err, dirlock.ErrHeld) {
		return nil, fmt.Errorf("%w: %w", ErrJournalInUse, err)
	}
	if err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		_ = lock.Release()
		return nil, fmt.Errorf("journal: %w", err)
	}
	return &journal{path: path, log: log, lock: lock, f: f, running: make(map[string]time.Time),
		unacked: make(map[string]agentproto.CommandResult)}, nil
}

// Replay reads the journal and rewrites it with only what is still needed.
// Commands started but not finished died with a previous agent process: they
// get a failed result, finished at now. It returns the acknowledged ids and
// the unacknowledged results, both oldest first.
func (j *journal) Replay(now time.Time) (acked []string, unacked []agentproto.CommandResult, err error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if err := j.read(); err != nil {
		return nil, nil, err
	}
	for id, at := range j.running {
		j.log.Warn("a command was running when the agent process ended; reporting it failed", "command_id", id)
		j.unacked[id] = agentproto.CommandResult{CommandID: id, Status: agentproto.ResultFailed, ExitCode: -1,
			Error: restartedError, StartedAt: at, FinishedAt: now}
		delete(j.running, id)
	}
	if err := j.compact(); err != nil {
		return nil, nil, err
	}
	return slices.Clone(j.acked), j.sortedUnacked(), nil
}

// read applies every record of the file, skipping (with a warning) lines
// that are not valid records, such as one torn by a crash mid-write.
func (j *journal) read() error {
	r := bufio.NewReader(j.f)
	for n := 1; ; n++ {
		line, err := r.ReadBytes('\n')
		if len(bytes.TrimSpace(line)) > 0 {
			var rec journalRecord
			if jerr := json.Unmarshal(line, &rec); jerr != nil || !j.apply(rec) {
				j.log.Warn("journal: ignoring an invalid record (a torn write?)", "path", j.path, "line", n, "err", jerr)
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("journal: read %s: %w", j.path, err)
		}
	}
}

// apply updates the state with rec; it reports whether rec was valid.
func (j *journal) apply(rec journalRecord) bool {
	switch {
	case rec.Rec == recStarted && rec.ID != "":
		j.running[rec.ID] = rec.At
	case rec.Rec == recResult && rec.Result != nil && rec.Result.CommandID != "":
		delete(j.running, rec.Result.CommandID)
		j.unacked[rec.Result.CommandID] = *rec.Result
	case rec.Rec == recAcked && rec.ID != "":
		delete(j.running, rec.ID)
		delete(j.unacked, rec.ID)
		j.acked = append(j.acked, rec.ID)
		if len(j.acked) > rememberedResults {
			j.acked = j.acked[len(j.acked)-rememberedResults:]
		}
	default:
		return false
	}
	return true
}

// Started implements commandJournal; the record is on disk when it returns.
func (j *journal) Started(id string, at time.Time) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.append(journalRecord{Rec: recStarted, ID: id, At: at}, true)
}

// Finished implements commandJournal; the record is on disk when it returns.
func (j *journal) Finished(res agentproto.CommandResult) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.append(journalRecord{Rec: recResult, Result: &res}, true)
}

// Acked implements commandJournal. It writes nothing for an id without an
// unacknowledged result, and does not wait for the disk: a lost ack record
// only makes the agent send the result once more.
func (j *journal) Acked(id string) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if _, ok := j.unacked[id]; !ok {
		return nil
	}
	return j.append(journalRecord{Rec: recAcked, ID: id}, false)
}

// append writes rec (and fsyncs the file if sync), then applies it and
// compacts the file if it has grown too big. j.mu is held.
func (j *journal) append(rec journalRecord, sync bool) error {
	if j.f == nil {
		return errJournalClosed
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	if j.torn {
		b = append([]byte{'\n'}, b...)
	}
	n, err := j.f.Write(append(b, '\n'))
	j.size += int64(n)
	j.torn = err != nil
	if err == nil && sync {
		err = j.f.Sync()
	}
	if err != nil {
		return fmt.Errorf("journal: write %s: %w", j.path, err)
	}
	j.apply(rec)
	if j.size > j.compactAt {
		if err := j.compact(); err != nil {
			j.log.Warn("journal: compaction failed", "err", err)
		}
	}
	return nil
}

// compact atomically replaces the file with one holding only the current
// state (internal/atomicfile), and appends to it from then on. If the new
// file cannot be reopened the journal closes: later records fail with
// errJournalClosed rather than go to the replaced file. j.mu is held.
func (j *journal) compact() error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	for _, id := range j.acked {
		_ = enc.Encode(journalRecord{Rec: recAcked, ID: id})
	}
	for _, res := range j.sortedUnacked() {
		_ = enc.Encode(journalRecord{Rec: recResult, Result: &res})
	}
	for id, at := range j.running {
		_ = enc.Encode(journalRecord{Rec: recStarted, ID: id, At: at})
	}
	if err := atomicfile.Write(j.path, buf.Bytes(), 0o600); err != nil {
		j.compactAt = j.size + minCompactBytes // do not retry at every write
		return fmt.Errorf("journal: compact %s: %w", j.path, err)
	}
	_ = j.f.Close()
	f, err := os.OpenFile(j.path, os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		j.f = nil
		return fmt.Errorf("journal: reopen %s after compacting: %w", j.path, err)
	}
	j.f, j.size, j.torn = f, int64(buf.Len()), false
	j.compactAt = max(minCompactBytes, 2*j.size)
	return nil
}

// sortedUnacked returns the unacknowledged results, oldest first. j.mu is
// held.
func (j *journal) sortedUnacked() []agentproto.CommandResult {
	out := make([]agentproto.CommandResult, 0, len(j.unacked))
	for _, res := range j.unacked {
		out = append(out, res)
	}
	slices.SortFunc(out, func(a, b agentproto.CommandResult) int {
		if c := a.FinishedAt.Compare(b.FinishedAt); c != 0 {
			return c
		}
		return strings.Compare(a.CommandID, b.CommandID)
	})
	return out
}

// Close closes the file and releases the lock; later records fail with
// errJournalClosed. A second Close does nothing.
func (j *journal) Close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.lock == nil {
		return nil
	}
	var err error
	if j.f != nil {
		err = j.f.Close()
		j.f = nil
	}
	err = errors.Join(err, j.lock.Release())
	j.lock = nil
	return err
}
