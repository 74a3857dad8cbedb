package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// Page sizes for the List methods.
const (
	defaultLimit = 100
	maxLimit     = 1000
)

// encodeTime returns t as unix nanoseconds, or nil for the zero time. Times
// beyond what int64 nanoseconds can hold (before 1678 or after 2262) are
// clamped to the nearest representable instant.
func encodeTime(t time.Time) any {
	switch {
	case t.IsZero():
		return nil
	case t.Before(time.Unix(0, math.MinInt64)):
		return int64(math.MinInt64)
	case t.After(time.Unix(0, math.MaxInt64)):
		return int64(math.MaxInt64)
	}
	return t.UnixNano()
}

// timeDest scans a column written by encodeTime into a UTC time.
type timeDest struct{ t *time.Time }

// Scan implements sql.Scanner.
func (d timeDest) Scan(src any) error {
	switch v := src.(type) {
	case nil:
		*d.t = time.Time{}
	case int64:
		*d.t = time.Unix(0, v).UTC()
	default:
		return fmt.Errorf("time column holds %T", src)
	}
	return nil
}

// encodeJSON returns v as JSON text; nil maps and slices become empty ones
// so that JSON columns always hold an object or an array.
func encodeJSON(v any, empty string) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	if string(b) == "null" {
		return empty, nil
	}
	return string(b), nil
}

// jsonDest scans a JSON text column into the value v points to.
type jsonDest struct{ v any }

// Scan implements sql.Scanner.
func (d jsonDest) Scan(src any) error {
	switch b := src.(type) {
	case string:
		return json.Unmarshal([]byte(b), d.v)
	case []byte:
		return json.Unmarshal(b, d.v)
	}
	return fmt.Errorf("JSON column holds %T", src)
}

// scanner is a *sql.Row or *sql.Rows.
type scanner interface {
	Scan(dest ...any) error
}

// where accumulates the conditions of a WHERE clause and their arguments.
type where struct {
	conds []string
	args  []any
}

// add appends a condition with its arguments.
func (w *where) add(cond string, args ...any) {
	w.conds = append(w.conds, cond)
	w.args = append(w.args, args...)
}

// String returns the WHERE clause, or "" if there are no conditions.
func (w *where) String() string {
	if len(w.conds) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(w.conds, " AND ")
}

// pageQuery is a filtered, ordered and paged SELECT.
type pageQuery struct {
	columns, from string
	where         where
	orderBy       string
	limit, offset int
}

// list runs q in one read transaction and returns the selected page and
// the number of rows matching q.where.
func list[T any](ctx context.Context, s *Store, q pageQuery, scan func(scanner) (T, error)) ([]T, int, error) {
	limit := q.limit
	switch {
	case limit <= 0:
		limit = defaultLimit
	case limit > maxLimit:
		limit = maxLimit
	}
	var items []T
	var total int
	err := s.view(ctx, func(tx *sql.Tx) error {
		count := "SELECT count(*) FROM " + q.from + q.where.String()
		if err := tx.QueryRowContext(ctx, count, q.where.args...).Scan(&total); err != nil {
			return err
		}
		query := "SELECT " + q.columns + " FROM " + q.from + q.where.String() +
			" ORDER BY " + q.orderBy + " LIMIT ? OFFSET ?"
		var err error
		items, err = collect(ctx, tx, query, slices.Concat(q.where.args, []any{limit, max(q.offset, 0)}), scan)
		return err
	})
	return items, total, err
}

// querier is a *sql.DB or *sql.Tx.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// collect runs query and scans every row. It never returns a nil slice
// without an error.
func collect[T any](ctx context.Context, db querier, query string, args []any, scan func(scanner) (T, error)) ([]T, error) {
	rows, err := db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	items := []T{}
	for rows.Next() {
		item, err := scan(rows)
		if err != nil {
			return nil, err
		}
		items = append(items, item)
	}
	return items, rows.Err()
}
