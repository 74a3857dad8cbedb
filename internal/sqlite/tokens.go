package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/home-console/client-manager/internal/fleet"
)

// tokenColumns are the columns scanToken reads.
const tokenColumns = `id, name, hash, expires_at, uses_left, created_at, created_by`

// scanToken reads one row of tokenColumns.
func scanToken(sc scanner) (fleet.EnrollmentToken, error) {
	var t fleet.EnrollmentToken
	err := sc.Scan(&t.ID, &t.Name, &t.Hash, timeDest{&t.ExpiresAt}, &t.UsesLeft,
		timeDest{&t.CreatedAt}, &t.CreatedBy)
	return t, err
}

// CreateEnrollmentToken stores t. A token with the same id or hash already
// stored is fleet.ErrConflict. A zero t.ExpiresAt never expires.
func (s *Store) CreateEnrollmentToken(ctx context.Context, t fleet.EnrollmentToken) error {
	_, err := s.exec(ctx, `INSERT INTO enrollment_tokens (`+tokenColumns+`)
		VALUES (?, ?, ?, ?, ?, ?, ?)`,
		t.ID, t.Name, t.Hash, encodeTime(t.ExpiresAt), t.UsesLeft, encodeTime(t.CreatedAt), t.CreatedBy)
	if err != nil {
		return fmt.Errorf("sqlite: create enrollment token %s: %w", t.ID, conflict(err))
	}
	return nil
}

// useToken spends one use of the token whose hash is hash in tx and
// returns the token as it is after that, or returns fleet.ErrTokenInvalid
// if the token is unknown, used up, or expires at or before now.
func useToken(ctx context.Context, tx *sql.Tx, hash []byte, now time.Time) (fleet.EnrollmentToken, error) {
	row := tx.QueryRowContext(ctx, `UPDATE enrollment_tokens SET uses_left = uses_left - 1
		WHERE hash = ? AND uses_left > 0 AND (expires_at IS NULL OR expires_at > ?)
		RETURNING `+tokenColumns, hash, encodeTime(now))
	t, err := scanToken(row)
	if errors.Is(err, sql.ErrNoRows) {
		return fleet.EnrollmentToken{}, fleet.ErrTokenInvalid
	}
	return t, err
}

// ListEnrollmentTokens returns all tokens, used up and expired ones
// included, newest first.
func (s *Store) ListEnrollmentTokens(ctx context.Context) ([]fleet.EnrollmentToken, error) {
	tokens, err := collect(ctx, s.reader, `SELECT `+tokenColumns+` FROM enrollment_tokens
		ORDER BY created_at DESC, id DESC`, nil, scanToken)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list enrollment tokens: %w", err)
	}
	return tokens, nil
}

// DeleteEnrollmentToken removes a token, or returns fleet.ErrNotFound.
func (s *Store) DeleteEnrollmentToken(ctx context.Context, id string) error {
	res, err := s.exec(ctx, `DELETE FROM enrollment_tokens WHERE id = ?`, id)
	if err == nil {
		err = affected(res)
	}
	if err != nil {
		return fmt.Errorf("sqlite: delete enrollment token %s: %w", id, err)
	}
	return nil
}
