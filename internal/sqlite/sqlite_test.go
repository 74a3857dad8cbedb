package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/home-console/client-manager/internal/fleet"
)

// at returns a fixed UTC instant plus d, for readable test times.
func at(d time.Duration) time.Time {
	return time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC).Add(d)
}

// openStore opens a store in a fresh directory and closes it when the test
// ends.
func openStore(t testing.TB) *Store {
	t.Helper()
	return openPath(t, filepath.Join(t.TempDir(), "state", "fleet.db"))
}

// openPath opens the store at path and closes it when the test ends.
func openPath(t testing.TB, path string) *Store {
	t.Helper()
	s, err := Open(context.Background(), path)
	if err != nil {
		t.Fatalf("Open(%q): %v", path, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func TestOpenCreatesPrivateFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	path := filepath.Join(dir, "fleet.db")
	s := openPath(t, path)
	if _, err := s.AppendAudit(t.Context(), fleet.AuditEntry{Action: "x"}); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]os.FileMode{
		dir:           0o700 | os.ModeDir,
		path:          0o600,
		path + "-wal": 0o600,
		path + "-shm": 0o600,
	} {
		fi, err := os.Stat(name)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode(); got != want {
			t.Errorf("mode of %s = %v, want %v", filepath.Base(name), got, want)
		}
	}
}

func TestOpenTightensExistingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fleet.db")
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	openPath(t, path)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode() != 0o600 {
		t.Errorf("mode = %v, want 0600", fi.Mode())
	}
}

func TestOpenEscapesPath(t *testing.T) {
	path := filepath.Join(t.TempDir(), "odd ?#%& dir", "fleet?x=1.db")
	s := openPath(t, path)
	if _, err := s.AppendAudit(t.Context(), fleet.AuditEntry{Action: "x"}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("database not at the given path: %v", err)
	}
}

func TestOpenRelativePath(t *testing.T) {
	t.Chdir(t.TempDir())
	s := openPath(t, filepath.Join("data", "cm.db"))
	if _, err := s.AppendAudit(t.Context(), fleet.AuditEntry{Action: "x"}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join("data", "cm.db")); err != nil {
		t.Fatalf("database not at the relative path: %v", err)
	}
}

func TestPragmas(t *testing.T) {
	s := openStore(t)
	for _, pool := range []struct {
		name      string
		db        *sql.DB
		queryOnly string
	}{
		{"writer", s.writer, "0"},
		{"reader", s.reader, "1"},
	} {
		for _, tt := range []struct{ pragma, want string }{
			{"journal_mode", "wal"},
			{"busy_timeout", "5000"},
			{"foreign_keys", "1"},
			{"synchronous", "1"},
			{"journal_size_limit", "0"},
			{"query_only", pool.queryOnly},
		} {
			var got string
			if err := pool.db.QueryRowContext(t.Context(), "PRAGMA "+tt.pragma).Scan(&got); err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("%s: PRAGMA %s = %q, want %q", pool.name, tt.pragma, got, tt.want)
			}
		}
	}
}

// appliedMigrations returns schema_migrations as version → applied_at.
func appliedMigrations(t *testing.T, s *Store) map[int]int64 {
	t.Helper()
	rows, err := s.reader.QueryContext(t.Context(), `SELECT version, applied_at FROM schema_migrations`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	m := map[int]int64{}
	for rows.Next() {
		var v int
		var applied int64
		if err := rows.Scan(&v, &applied); err != nil {
			t.Fatal(err)
		}
		m[v] = applied
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestReopenKeepsDataAndMigrations(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fleet.db")
	s, err := Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CreateAgent(t.Context(), fleet.Agent{ID: "a1", FirstSeen: at(0)}, []byte("h")); err != nil {
		t.Fatal(err)
	}
	before := appliedMigrations(t, s)
	ms, err := migrations()
	if err != nil {
		t.Fatal(err)
	}
	if len(before) != len(ms) {
		t.Fatalf("applied %d migrations, want %d", len(before), len(ms))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openPath(t, path)
	if _, err := s.Agent(t.Context(), "a1"); err != nil {
		t.Errorf("agent lost on reopen: %v", err)
	}
	if after := appliedMigrations(t, s); !reflect.DeepEqual(after, before) {
		t.Errorf("schema_migrations changed on reopen: %v, was %v", after, before)
	}
}

func TestOpenRejectsNewerSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fleet.db")
	s, err := Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.writer.ExecContext(t.Context(),
		`INSERT INTO schema_migrations (version, applied_at) VALUES (9999, 0)`); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(t.Context(), path)
	if err == nil {
		s.Close()
		t.Fatal("Open succeeded on a database from a newer binary")
	}
	if !strings.Contains(err.Error(), "schema version 9999 is newer") {
		t.Errorf("error = %v, want it to name the newer schema version", err)
	}
}

func TestMigrationsOrdered(t *testing.T) {
	ms, err := migrations()
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range ms {
		if m.version != i+1 {
			t.Errorf("migration %s has version %d, want %d", m.name, m.version, i+1)
		}
	}
}

// TestLiveStatuses checks liveStatuses against fleet's notion of terminal.
func TestLiveStatuses(t *testing.T) {
	s := openStore(t)
	for _, st := range []fleet.CommandStatus{
		fleet.StatusQueued, fleet.StatusPending, fleet.StatusDispatched, fleet.StatusRunning,
		fleet.StatusCompleted, fleet.StatusFailed, fleet.StatusCancelled, fleet.StatusTimedOut,
		fleet.StatusExpired,
	} {
		var live bool
		if err := s.reader.QueryRowContext(t.Context(), `SELECT ? IN `+liveStatuses, st).Scan(&live); err != nil {
			t.Fatal(err)
		}
		if live == st.Terminal() {
			t.Errorf("status %s: live = %v, Terminal() = %v", st, live, st.Terminal())
		}
	}
}

func TestTimeEncoding(t *testing.T) {
	far := time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		in   time.Time
		want time.Time
	}{
		{"zero", time.Time{}, time.Time{}},
		{"utc", at(0), at(0)},
		{"other zone", at(0).In(time.FixedZone("X", 3600)), at(0)},
		{"monotonic", time.Unix(0, at(0).UnixNano()).Round(0), at(0)},
		{"far future clamps", far, time.Unix(0, math.MaxInt64).UTC()},
		{"far past clamps", time.Date(1, 1, 2, 0, 0, 0, 0, time.UTC), time.Unix(0, math.MinInt64).UTC()},
	}
	for _, tt := range tests {
		var got time.Time
		if err := (timeDest{&got}).Scan(encodeTime(tt.in)); err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if got != tt.want {
			t.Errorf("%s: round trip of %v = %v, want %v", tt.name, tt.in, got, tt.want)
		}
	}
}

// TestConcurrentWriteLoad runs many writers and a reader at once; none may
// see SQLITE_BUSY or any other error.
func TestConcurrentWriteLoad(t *testing.T) {
	const writers, perWriter = 8, 200
	s := openStore(t)
	ctx := t.Context()
	errs := make(chan error, writers+1)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				id := fmt.Sprintf("c-%d-%d", w, i)
				c := fleet.Command{ID: id, AgentID: "a", Command: "true", Status: fleet.StatusPending, CreatedAt: at(0)}
				if err := s.CreateCommand(ctx, c); err != nil {
					errs <- err
					return
				}
				if err := s.FinishCommand(ctx, id, fleet.CommandResult{Status: fleet.StatusCompleted, At: at(time.Second)}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	done := make(chan struct{})
	var reader sync.WaitGroup
	reader.Go(func() {
		for {
			select {
			case <-done:
				return
			default:
			}
			if _, _, err := s.ListCommands(ctx, fleet.CommandFilter{Limit: 10}); err != nil {
				errs <- err
				return
			}
		}
	})
	wg.Wait()
	close(done)
	reader.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	_, total, err := s.ListCommands(ctx, fleet.CommandFilter{Status: []fleet.CommandStatus{fleet.StatusCompleted}})
	if err != nil {
		t.Fatal(err)
	}
	if total != writers*perWriter {
		t.Errorf("%d completed commands, want %d", total, writers*perWriter)
	}
}

// TestTwoStoresOneFile has two stores, as two processes would, write the
// same file at once: the busy timeout and BEGIN IMMEDIATE must keep both
// free of SQLITE_BUSY.
func TestTwoStoresOneFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fleet.db")
	stores := []*Store{openPath(t, path), openPath(t, path)}
	ctx := t.Context()
	errs := make(chan error, 8)
	var wg sync.WaitGroup
	for n, s := range stores {
		for w := range 2 {
			wg.Go(func() {
				for i := range 100 {
					e := fleet.AuditEntry{Time: at(0), Action: fmt.Sprintf("%d-%d-%d", n, w, i)}
					if _, err := s.AppendAudit(ctx, e); err != nil {
						errs <- err
						return
					}
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	_, total, err := stores[0].ListAudit(ctx, fleet.AuditFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if total != 400 {
		t.Errorf("%d audit entries, want 400", total)
	}
}

// wantErr fails t unless errors.Is(err, want), or err is nil when want is.
func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Errorf("%s: error = %v, want %v", what, err, want)
	}
}
