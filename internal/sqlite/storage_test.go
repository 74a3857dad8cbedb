package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/home-console/client-manager/internal/fleet"
)

// driverError returns the error the driver gives for query on a database
// opened with dsn, or for opening it if query is "".
func driverError(t *testing.T, dsn, query string) error {
	t.Helper()
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if query == "" {
		return db.PingContext(t.Context())
	}
	_, err = db.ExecContext(t.Context(), query)
	return err
}

// fullDatabase returns the error of an insert into a database that may
// not grow (max_page_count): SQLITE_FULL, as on a full disk.
func fullDatabase(t *testing.T) error {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), "full.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	db.SetMaxOpenConns(1)
	if _, err := db.ExecContext(t.Context(), `CREATE TABLE t (b BLOB)`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(t.Context(), `PRAGMA max_page_count = 2`); err != nil {
		t.Fatal(err)
	}
	_, err = db.ExecContext(t.Context(), `INSERT INTO t VALUES (zeroblob(100000))`)
	return err
}

// TestStorageErrorMapping: driver errors that mean the disk refuses
// writes (full, I/O error, cannot open, read-only; extended codes
// included) become fleet.ErrStorageUnavailable with a reason and the
// driver's error as cause; every other error is returned unchanged.
func TestStorageErrorMapping(t *testing.T) {
	dir := t.TempDir()
	// A database file that is /dev/null: fsync fails (SQLITE_IOERR_FSYNC).
	devNull := filepath.Join(dir, "null.db")
	if err := os.Symlink(os.DevNull, devNull); err != nil {
		t.Fatal(err)
	}
	constraint := driverError(t, "file:"+filepath.Join(dir, "c.db"),
		`CREATE TABLE u (x UNIQUE); INSERT INTO u VALUES (1); INSERT INTO u VALUES (1)`)
	plain := errors.New("not from the driver")
	tests := []struct {
		name   string
		err    error
		reason string // "" if the error is not a storage error
	}{
		{"full", fullDatabase(t), "full (SQLITE_FULL)"},
		{"I/O error", driverError(t, "file:"+devNull+"?_pragma=synchronous(FULL)", `CREATE TABLE t (a)`), "(SQLITE_IOERR)"},
		{"read-only", driverError(t, "file:"+filepath.Join(dir, "ro.db")+"?_pragma=query_only(1)", `CREATE TABLE t (a)`), "(SQLITE_READONLY)"},
		{"cannot open", driverError(t, "file:"+filepath.Join(dir, "missing", "x.db")+"?mode=ro", ""), "(SQLITE_CANTOPEN)"},
		{"constraint", constraint, ""},
		{"not a driver error", plain, ""},
		{"nil", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := storageError(tt.err)
			if tt.reason == "" {
				if got != tt.err {
					t.Fatalf("storageError(%v) = %v, want it unchanged", tt.err, got)
				}
				return
			}
			if tt.err == nil {
				t.Fatal("no driver error to map")
			}
			msg := fleet.MessageOf(got)
			if !errors.Is(got, fleet.ErrStorageUnavailable) || !errors.Is(got, tt.err) ||
				!strings.HasPrefix(msg, "storage unavailable: ") || !strings.HasSuffix(msg, tt.reason) {
				t.Fatalf("storageError(%v) = %q (message %q); want ErrStorageUnavailable wrapping it, ending %q", tt.err, got, msg, tt.reason)
			}
		})
	}
}

// limitPages lets the store's database grow by at most extra pages (or
// removes the limit if extra < 0): a full disk for writes that need new
// pages.
func limitPages(t *testing.T, s *Store, extra int) {
	t.Helper()
	var n int
	if err := s.writer.QueryRowContext(t.Context(), `PRAGMA page_count`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	limit := n + extra
	if extra < 0 {
		limit = 1 << 30
	}
	if _, err := s.writer.ExecContext(t.Context(), `PRAGMA max_page_count = `+strconv.Itoa(limit)); err != nil {
		t.Fatal(err)
	}
}

// TestWritableFollowsWrites: a write the disk refuses is
// ErrStorageUnavailable (the command stays as it was) and makes Writable
// fail with the reason until a recovery probe succeeds.
func TestWritableFollowsWrites(t *testing.T) {
	s := openStore(t)
	ctx := t.Context()
	createCommands(t, s, newCommand("c1", "a1", 0))
	if err := s.Writable(); err != nil {
		t.Fatalf("Writable of a new store = %v", err)
	}
	limitPages(t, s, 0)
	big := fleet.CommandResult{Status: fleet.StatusCompleted, Stdout: strings.Repeat("x", 200000)}
	err := s.FinishCommand(ctx, "c1", big)
	if !errors.Is(err, fleet.ErrStorageUnavailable) {
		t.Fatalf("FinishCommand on a full store = %v, want ErrStorageUnavailable", err)
	}
	if c, err := s.Command(ctx, "c1"); err != nil || c.Status.Terminal() {
		t.Fatalf("command after the refused finish: %+v, %v", c, err)
	}
	werr := s.Writable()
	if !errors.Is(werr, fleet.ErrStorageUnavailable) || !strings.Contains(fleet.MessageOf(werr), "SQLITE_FULL") ||
		!strings.Contains(fleet.MessageOf(werr), "writes refused since") {
		t.Fatalf("Writable = %v", werr)
	}
	// A refusal for a broken rule says nothing about the disk; a small
	// write that fits (in place) is taken but does not prove a recovery,
	// and a recovery probe needs room for ProbeBytes.
	if err := s.MarkRunning(ctx, "nope"); !errors.Is(err, fleet.ErrNotFound) || s.Writable() == nil {
		t.Fatalf("MarkRunning(unknown) = %v, Writable = %v", err, s.Writable())
	}
	if err := s.MarkRunning(ctx, "c1"); err != nil || s.Writable() == nil {
		t.Fatalf("MarkRunning(c1) = %v, Writable = %v; want taken, still failing", err, s.Writable())
	}
	if err := s.Probe(ctx); !errors.Is(err, fleet.ErrStorageUnavailable) || s.Writable() == nil {
		t.Fatalf("recovery probe on a full store = %v, Writable = %v", err, s.Writable())
	}
	limitPages(t, s, -1)
	if err := s.Probe(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Writable(); err != nil {
		t.Fatalf("Writable after a successful probe = %v", err)
	}
	if err := s.FinishCommand(ctx, "c1", big); err != nil {
		t.Fatal(err)
	}
}

// TestWatchNoticesRecovery: Watch probes a failing store every
// ProbeInterval, so Writable turns nil by itself once writes succeed.
func TestWatchNoticesRecovery(t *testing.T) {
	s := openStore(t)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); s.Watch(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	s.health.record(storageError(fullDatabase(t)), at(0), false)
	if s.Writable() == nil {
		t.Fatal("Writable = nil after a refused write")
	}
	deadline := time.Now().Add(10 * ProbeInterval)
	for s.Writable() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("Writable still %v after %s", s.Writable(), 10*ProbeInterval)
		}
		time.Sleep(ProbeInterval / 10)
	}
}
