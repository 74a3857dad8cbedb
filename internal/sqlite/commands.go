package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/home-console/client-manager/internal/fleet"
)

// liveStatuses lists the non-terminal statuses for `status IN`. The
// schema's CHECK constraint allows only fleet's statuses, so every other
// status is terminal.
const liveStatuses = `('queued', 'pending', 'dispatched', 'running')`

// expiredReason is the Error of a queued command that expired.
const expiredReason = "queued command expired before the agent connected"

// commandColumns are the columns scanCommand reads.
const commandColumns = `id, client_id, command, args, timeout_ms, status, requested_by, batch_id,
	expires_at, created_at, dispatched_at, finished_at, attempts, exit_code, stdout, stderr,
	truncated, error, cancel_requested_at, cancel_requested_by`

// scanCommand reads one row of commandColumns.
func scanCommand(sc scanner) (fleet.Command, error) {
	var c fleet.Command
	var timeoutMS int64
	err := sc.Scan(&c.ID, &c.AgentID, &c.Command, jsonDest{&c.Args}, &timeoutMS, &c.Status,
		&c.RequestedBy, &c.BatchID, timeDest{&c.ExpiresAt}, timeDest{&c.CreatedAt},
		timeDest{&c.DispatchedAt}, timeDest{&c.FinishedAt}, &c.Attempts, &c.ExitCode,
		&c.Stdout, &c.Stderr, &c.Truncated, &c.Error, timeDest{&c.CancelRequestedAt}, &c.CancelRequestedBy)
	c.Timeout = time.Duration(timeoutMS) * time.Millisecond
	return c, err
}

// CreateCommand stores a new command. A command with the same id already
// stored is fleet.ErrConflict. Timeout is kept to the millisecond.
func (s *Store) CreateCommand(ctx context.Context, c fleet.Command) error {
	args, err := encodeJSON(c.Args, "[]")
	if err == nil {
		_, err = s.exec(ctx, `INSERT INTO commands (`+commandColumns+`)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			c.ID, c.AgentID, c.Command, args, c.Timeout.Milliseconds(), c.Status, c.RequestedBy,
			c.BatchID, encodeTime(c.ExpiresAt), encodeTime(c.CreatedAt), encodeTime(c.DispatchedAt),
			encodeTime(c.FinishedAt), c.Attempts, c.ExitCode, c.Stdout, c.Stderr, c.Truncated, c.Error,
			encodeTime(c.CancelRequestedAt), c.CancelRequestedBy)
	}
	if err != nil {
		return fmt.Errorf("sqlite: create command %s: %w", c.ID, conflict(err))
	}
	return nil
}

// Command returns one command, or fleet.ErrNotFound.
func (s *Store) Command(ctx context.Context, id string) (fleet.Command, error) {
	row := s.reader.QueryRowContext(ctx, `SELECT `+commandColumns+` FROM commands WHERE id = ?`, id)
	c, err := scanCommand(row)
	if err != nil {
		return fleet.Command{}, fmt.Errorf("sqlite: command %s: %w", id, notFound(err))
	}
	return c, nil
}

// MarkDispatched records a delivery of a live command to its agent: it
// counts an attempt, sets the dispatch time and moves the command to
// dispatched, except that a running command (redelivered after a
// reconnect) stays running. A terminal command is fleet.ErrAlreadyFinal.
func (s *Store) MarkDispatched(ctx context.Context, id string, at time.Time) error {
	err := s.transition(ctx, id, `UPDATE commands SET attempts = attempts + 1, dispatched_at = ?,
		status = CASE status WHEN 'running' THEN 'running' ELSE 'dispatched' END
		WHERE id = ? AND status IN `+liveStatuses, encodeTime(at), id)
	if err != nil {
		return fmt.Errorf("sqlite: mark command %s dispatched: %w", id, err)
	}
	return nil
}

// MarkRunning moves a live command to running; a running command is left
// as it is. A terminal command is fleet.ErrAlreadyFinal.
func (s *Store) MarkRunning(ctx context.Context, id string) error {
	err := s.transition(ctx, id, `UPDATE commands SET status = 'running'
		WHERE id = ? AND status IN `+liveStatuses, id)
	if err != nil {
		return fmt.Errorf("sqlite: mark command %s running: %w", id, err)
	}
	return nil
}

// RequestCancel records that by asked at at to cancel a live command. The
// first request is kept: later ones change nothing and succeed. A terminal
// command is fleet.ErrAlreadyFinal.
func (s *Store) RequestCancel(ctx context.Context, id, by string, at time.Time) error {
	err := s.transition(ctx, id, `UPDATE commands SET cancel_requested_at = coalesce(cancel_requested_at, ?),
		cancel_requested_by = CASE WHEN cancel_requested_at IS NULL THEN ? ELSE cancel_requested_by END
		WHERE id = ? AND status IN `+liveStatuses, encodeTime(at), by, id)
	if err != nil {
		return fmt.Errorf("sqlite: request cancel of command %s: %w", id, err)
	}
	return nil
}

// FinishCommand applies the terminal result r to a live command. A command
// already terminal is left unchanged and fleet.ErrAlreadyFinal returned, so
// of concurrent calls exactly one succeeds. A zero r.At means now.
func (s *Store) FinishCommand(ctx context.Context, id string, r fleet.CommandResult) error {
	if !r.Status.Terminal() {
		return fmt.Errorf("sqlite: finish command %s: status %q is not terminal", id, r.Status)
	}
	if r.At.IsZero() {
		r.At = time.Now()
	}
	err := s.transition(ctx, id, `UPDATE commands SET status = ?, exit_code = ?, stdout = ?, stderr = ?,
		truncated = ?, error = ?, finished_at = ? WHERE id = ? AND status IN `+liveStatuses,
		r.Status, r.ExitCode, r.Stdout, r.Stderr, r.Truncated, r.Error, encodeTime(r.At), id)
	if err != nil {
		return fmt.Errorf("sqlite: finish command %s: %w", id, err)
	}
	return nil
}

// transition runs update, which must change command id only if it is
// live. If it changed nothing, transition reports why: fleet.ErrNotFound
// or fleet.ErrAlreadyFinal.
func (s *Store) transition(ctx context.Context, id, update string, args ...any) error {
	return s.update(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, update, args...)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n > 0 {
			return err
		}
		var exists bool
		if err := tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM commands WHERE id = ?)`, id).Scan(&exists); err != nil {
			return err
		}
		if exists {
			return fleet.ErrAlreadyFinal
		}
		return fleet.ErrNotFound
	})
}

// ListCommands returns the page of commands selected by f, newest first,
// and the number of commands matching f. Since selects commands created at
// or after it. The page size is f.Limit, 100 if unset, at most 1000.
func (s *Store) ListCommands(ctx context.Context, f fleet.CommandFilter) ([]fleet.Command, int, error) {
	q := pageQuery{columns: commandColumns, from: "commands", orderBy: "created_at DESC, id DESC",
		limit: f.Limit, offset: f.Offset}
	if f.AgentID != "" {
		q.where.add("client_id = ?", f.AgentID)
	}
	if len(f.Status) > 0 {
		statuses, err := json.Marshal(f.Status)
		if err != nil {
			return nil, 0, fmt.Errorf("sqlite: list commands: %w", err)
		}
		q.where.add("status IN (SELECT value FROM json_each(?))", string(statuses))
	}
	if f.BatchID != "" {
		q.where.add("batch_id = ?", f.BatchID)
	}
	if f.RequestedBy != "" {
		q.where.add("requested_by = ?", f.RequestedBy)
	}
	if !f.Since.IsZero() {
		q.where.add("created_at >= ?", encodeTime(f.Since))
	}
	commands, total, err := list(ctx, s, q, scanCommand)
	if err != nil {
		return nil, 0, fmt.Errorf("sqlite: list commands: %w", err)
	}
	return commands, total, nil
}

// LiveCommands returns the non-terminal commands of agent agentID, or of
// every agent if agentID is "", oldest first.
func (s *Store) LiveCommands(ctx context.Context, agentID string) ([]fleet.Command, error) {
	var w where
	w.add("status IN " + liveStatuses)
	if agentID != "" {
		w.add("client_id = ?", agentID)
	}
	commands, err := collect(ctx, s.reader, `SELECT `+commandColumns+` FROM commands`+w.String()+
		` ORDER BY created_at, id`, w.args, scanCommand)
	if err != nil {
		return nil, fmt.Errorf("sqlite: live commands of %q: %w", agentID, err)
	}
	return commands, nil
}

// ExpireCommands finishes the queued commands whose ExpiresAt is before now
// as expired, and returns them as they are now, oldest first. A queued
// command with a zero ExpiresAt waits forever.
func (s *Store) ExpireCommands(ctx context.Context, now time.Time) ([]fleet.Command, error) {
	var commands []fleet.Command
	err := s.update(ctx, func(tx *sql.Tx) error {
		var err error
		commands, err = collect(ctx, tx, `UPDATE commands SET status = 'expired', error = ?, finished_at = ?
			WHERE status = 'queued' AND expires_at < ? RETURNING `+commandColumns,
			[]any{expiredReason, encodeTime(now), encodeTime(now)}, scanCommand)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("sqlite: expire commands: %w", err)
	}
	slices.SortFunc(commands, func(a, b fleet.Command) int {
		return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), cmp.Compare(a.ID, b.ID))
	})
	return commands, nil
}

// PruneCommands deletes the terminal commands finished before cutoff (or,
// lacking a finish time, created before it) and returns how many.
func (s *Store) PruneCommands(ctx context.Context, cutoff time.Time) (int, error) {
	res, err := s.exec(ctx, `DELETE FROM commands WHERE status NOT IN `+liveStatuses+`
		AND coalesce(finished_at, created_at) < ?`, encodeTime(cutoff))
	if err != nil {
		return 0, fmt.Errorf("sqlite: prune commands: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("sqlite: prune commands: %w", err)
	}
	return int(n), nil
}
