package sqlite

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/home-console/client-manager/internal/fleet"
)

// auditColumns are the columns scanAudit reads.
const auditColumns = `id, time, actor, role, source, action, target, result, detail`

// scanAudit reads one row of auditColumns.
func scanAudit(sc scanner) (fleet.AuditEntry, error) {
	var e fleet.AuditEntry
	err := sc.Scan(&e.ID, timeDest{&e.Time}, &e.Actor, &e.Role, &e.Source, &e.Action,
		&e.Target, &e.Result, &e.Detail)
	return e, err
}

// AppendAudit appends e to the audit log and returns the id the store
// assigned to it; the caller's e.ID is ignored.
func (s *Store) AppendAudit(ctx context.Context, e fleet.AuditEntry) (int64, error) {
	var id int64
	err := s.update(ctx, func(tx *sql.Tx) error {
		var err error
		id, err = insertAudit(ctx, tx, e)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("sqlite: append audit %s %s: %w", e.Action, e.Target, err)
	}
	return id, nil
}

// insertAudit appends e in tx and returns its id.
func insertAudit(ctx context.Context, tx *sql.Tx, e fleet.AuditEntry) (int64, error) {
	var id int64
	err := tx.QueryRowContext(ctx, `INSERT INTO audit (time, actor, role, source, action, target, result, detail)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
		encodeTime(e.Time), e.Actor, e.Role, e.Source, e.Action, e.Target, e.Result, e.Detail).Scan(&id)
	return id, err
}

// FinishAudit sets the result and detail of the audit entry id, or
// returns fleet.ErrNotFound.
func (s *Store) FinishAudit(ctx context.Context, id int64, result, detail string) error {
	res, err := s.exec(ctx, `UPDATE audit SET result = ?, detail = ? WHERE id = ?`, result, detail, id)
	if err == nil {
		err = affected(res)
	}
	if err != nil {
		return fmt.Errorf("sqlite: finish audit %d: %w", id, err)
	}
	return nil
}

// ListAudit returns the page of audit entries selected by f, newest first,
// and the number of entries matching f. Actor, Action and Target match
// exactly; Since selects entries at or after it. The page size is f.Limit,
// 100 if unset, at most 1000.
func (s *Store) ListAudit(ctx context.Context, f fleet.AuditFilter) ([]fleet.AuditEntry, int, error) {
	q := pageQuery{columns: auditColumns, from: "audit", orderBy: "time DESC, id DESC",
		limit: f.Limit, offset: f.Offset}
	if f.Actor != "" {
		q.where.add("actor = ?", f.Actor)
	}
	if f.Action != "" {
		q.where.add("action = ?", f.Action)
	}
	if f.Target != "" {
		q.where.add("target = ?", f.Target)
	}
	if !f.Since.IsZero() {
		q.where.add("time >= ?", encodeTime(f.Since))
	}
	entries, total, err := list(ctx, s, q, scanAudit)
	if err != nil {
		return nil, 0, fmt.Errorf("sqlite: list audit: %w", err)
	}
	return entries, total, nil
}
