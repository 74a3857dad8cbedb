package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/home-console/client-manager/internal/fleet"
)

// storageReasons says, for each primary SQLite result code that means the
// store cannot write (as opposed to a bug or a broken rule), why.
var storageReasons = map[int]string{
	sqlite3.SQLITE_FULL:     "the disk holding the store is full (SQLITE_FULL)",
	sqlite3.SQLITE_IOERR:    "disk I/O error on the store (SQLITE_IOERR)",
	sqlite3.SQLITE_CANTOPEN: "the store's files cannot be opened (SQLITE_CANTOPEN)",
	sqlite3.SQLITE_READONLY: "the store's files are read-only (SQLITE_READONLY)",
}

// storageError translates an SQLite error whose code means the store
// cannot write (disk full, I/O error, files that cannot be opened or are
// read-only; extended codes included) into a *fleet.Error of code
// fleet.CodeStorageUnavailable that says why and wraps err, and returns
// other errors unchanged.
func storageError(err error) error {
	var e *sqlite.Error
	if !errors.As(err, &e) {
		return err
	}
	reason, ok := storageReasons[e.Code()&0xff]
	if !ok {
		return err
	}
	return &fleet.Error{Code: fleet.CodeStorageUnavailable, Message: "storage unavailable: " + reason, Cause: err}
}

// writeHealth says whether the disk takes the store's writes. A write
// the disk refuses marks the store failing; only a successful recovery
// probe (ProbeBytes written) clears that, because on a full disk a small
// write may still fit in space a refused one left allocated. A write
// refused for a broken rule (not found, conflict) says nothing about the
// disk.
type writeHealth struct {
	mu    sync.Mutex
	at    time.Time // of the latest write that said something about the disk
	err   error     // the latest refusal while failing; nil while not
	since time.Time // when the store began failing
}

// record notes the outcome err (already passed through storageError) of
// a write finished at now; recovered says that it was a recovery probe.
func (h *writeHealth) record(err error, now time.Time, recovered bool) {
	storage := errors.Is(err, fleet.ErrStorageUnavailable)
	if err != nil && !storage {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.at = now
	switch {
	case storage:
		if h.err == nil {
			h.since = now
		}
		h.err = err
	case recovered:
		h.err = nil
	}
}

// failing reports whether the store is failing, and when the latest write
// that said something about the disk finished.
func (h *writeHealth) failing() (bool, time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.err != nil, h.at
}

// observe maps err from a write on the writer connection (storageError),
// records the outcome and returns the mapped error.
func (s *Store) observe(err error) error {
	err = storageError(err)
	s.health.record(err, time.Now(), false)
	return err
}

// exec runs one write statement on the writer connection.
func (s *Store) exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	res, err := s.writer.ExecContext(ctx, query, args...)
	return res, s.observe(err)
}

// Writable returns nil unless the disk refused a write and no recovery
// probe has succeeded since; then it returns the latest refusal, which
// matches fleet.ErrStorageUnavailable and says since when writes fail.
func (s *Store) Writable() error {
	s.health.mu.Lock()
	defer s.health.mu.Unlock()
	if s.health.err == nil {
		return nil
	}
	return &fleet.Error{
		Code:    fleet.CodeStorageUnavailable,
		Message: fmt.Sprintf("%s; writes refused since %s", s.health.err, s.health.since.UTC().Format(time.RFC3339)),
		Cause:   s.health.err,
	}
}

// Probe sizes and intervals.
const (
	// ProbeBytes is what a recovery probe writes: a store that takes it
	// takes ordinary writes again.
	ProbeBytes = 64 << 10
	// ProbeInterval is how often Watch probes a failing store, to notice
	// the recovery.
	ProbeInterval = time.Second
	// ProbeIdle is how long a store may go without a write before Watch
	// probes it, to notice a disk that filled while the store was idle.
	ProbeIdle = 10 * time.Second
)

// Probe makes a real write to the store_probe table and returns its
// error, which matches fleet.ErrStorageUnavailable when the disk refuses
// it. A store that is not failing rewrites one small row. A failing one
// writes ProbeBytes of fresh data instead (a recovery probe), and its
// success makes Writable nil again.
func (s *Store) Probe(ctx context.Context) error {
	failing, _ := s.health.failing()
	query, args := `UPDATE store_probe SET at = ? WHERE id = 1`, []any{time.Now().UnixNano()}
	if failing {
		query, args = `UPDATE store_probe SET at = ?, pad = randomblob(?) WHERE id = 2`, []any{time.Now().UnixNano(), ProbeBytes}
	}
	_, err := s.writer.ExecContext(ctx, query, args...)
	err = storageError(err)
	s.health.record(err, time.Now(), failing && err == nil)
	if err != nil {
		return fmt.Errorf("sqlite: probe: %w", err)
	}
	return nil
}

// Watch keeps Writable current until ctx ends: every ProbeInterval it
// probes a failing store, and a store that made no write in the last
// ProbeIdle, so a busy store is not probed at all.
func (s *Store) Watch(ctx context.Context) {
	t := time.NewTicker(ProbeInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if failing, at := s.health.failing(); failing || time.Since(at) >= ProbeIdle {
			_ = s.Probe(ctx)
		}
	}
}
