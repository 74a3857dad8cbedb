// Package sqlite implements fleet.Store on an SQLite database file through
// the pure-Go driver modernc.org/sqlite.
//
// The database runs in WAL mode. Writes go through a single connection, so
// writers in this process queue in Go instead of contending for SQLite's
// lock; write transactions begin IMMEDIATE and every connection waits up to
// busyTimeout for a lock held by another process. Reads use a separate pool
// of read-only connections and never wait for the writer.
//
// A write the disk refuses (full, I/O error, read-only) returns an error
// matching fleet.ErrStorageUnavailable that says why; Writable reports
// whether the latest write succeeded, and Watch probes the disk with a
// tiny write to keep that current while the store is idle or failing.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"

	"modernc.org/sqlite" // registers the "sqlite" driver
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/home-console/client-manager/internal/fleet"
)

const (
	// busyTimeout is how long, in milliseconds, a connection waits for a
	// lock held by another connection before failing with SQLITE_BUSY.
	busyTimeout = 5000
	// readers is the size of the read connection pool.
	readers = 4
)

var _ fleet.Store = (*Store)(nil)

// Store is a fleet.Store backed by one SQLite database file. It is safe for
// concurrent use.
type Store struct {
	writer *sql.DB // one connection, BEGIN IMMEDIATE
	reader *sql.DB // query_only connections
	health writeHealth
}

// Open opens the database at path, creating it and its parent directory
// (mode 0700) if needed, restricts the file to mode 0600 and applies any
// pending schema migrations. It fails if the database was written by a
// newer binary with a schema this one does not know.
func Open(ctx context.Context, path string) (*Store, error) {
	// A relative path would read as a URI authority ("file://data/...").
	path, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	if err := prepareFile(path); err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	writer, err := sql.Open("sqlite", dsn(path, "_txlock=immediate"))
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	reader, err := sql.Open("sqlite", dsn(path, "_pragma=query_only(1)"))
	if err != nil {
		writer.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	s := &Store{writer: writer, reader: reader}
	s.writer.SetMaxOpenConns(1)
	s.reader.SetMaxOpenConns(readers)
	s.reader.SetMaxIdleConns(readers)
	// The writer connects first: it switches the file to WAL mode, which a
	// query_only reader cannot do.
	if err := s.writer.PingContext(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	if err := migrate(ctx, s.writer); err != nil {
		s.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	return s, nil
}

// Close closes every connection to the database.
func (s *Store) Close() error {
	if err := errors.Join(s.reader.Close(), s.writer.Close()); err != nil {
		return fmt.Errorf("sqlite: close: %w", err)
	}
	return nil
}

// prepareFile creates the parent directory and the database file, and
// makes the file private. SQLite gives the -wal and -shm files the mode of
// the database file.
func prepareFile(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Chmod(path, 0o600)
}

// dsn returns the data source name of the database at path with the
// store's pragmas, which the driver applies to every new connection; extra
// holds more query parameters ("key=value").
func dsn(path, extra string) string {
	q := url.Values{"_pragma": {
		fmt.Sprintf("busy_timeout(%d)", busyTimeout),
		"journal_mode(WAL)",
		"synchronous(NORMAL)",
		"foreign_keys(ON)",
		// Cut the WAL file back to what it holds after each checkpoint:
		// its space goes back to the disk, and on a full disk the next
		// write needs new space, so the failure shows at once.
		"journal_size_limit(0)",
	}}
	u := url.URL{Scheme: "file", Path: filepath.ToSlash(path), RawQuery: q.Encode() + "&" + extra}
	return u.String()
}

// update runs fn in a write transaction on the writer connection. Its
// error passes through observe.
func (s *Store) update(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := s.writer.BeginTx(ctx, nil)
	if err != nil {
		return s.observe(err)
	}
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		return s.observe(err)
	}
	return s.observe(tx.Commit())
}

// view runs fn in a read transaction, which sees one snapshot of the
// database.
func (s *Store) view(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := s.reader.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return err
	}
	defer tx.Rollback()
	return fn(tx)
}

// conflict translates a uniqueness violation into fleet.ErrConflict and
// returns other errors unchanged.
func conflict(err error) error {
	var e *sqlite.Error
	if errors.As(err, &e) && (e.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY ||
		e.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE) {
		return fmt.Errorf("%w: %v", fleet.ErrConflict, err)
	}
	return err
}

// notFound translates sql.ErrNoRows into fleet.ErrNotFound and returns
// other errors unchanged.
func notFound(err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return fleet.ErrNotFound
	}
	return err
}

// affected returns fleet.ErrNotFound if res changed no row.
func affected(res sql.Result) error {
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return fleet.ErrNotFound
	}
	return nil
}
