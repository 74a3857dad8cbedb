package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/home-console/client-manager/internal/fleet"
)

// operatorTokenColumns are the columns scanOperatorToken reads.
const operatorTokenColumns = `id, name, role, hash, created_at, created_by, expires_at, revoked_at`

func scanOperatorToken(sc scanner) (fleet.OperatorToken, error) {
	var t fleet.OperatorToken
	err := sc.Scan(&t.ID, &t.Name, &t.Role, &t.Hash, timeDest{&t.CreatedAt}, &t.CreatedBy,
		timeDest{&t.ExpiresAt}, timeDest{&t.RevokedAt})
	return t, err
}

// CreateOperatorToken stores t. A token with the same id or hash is
// fleet.ErrConflict.
func (s *Store) CreateOperatorToken(ctx context.Context, t fleet.OperatorToken) error {
	_, err := s.exec(ctx, `INSERT INTO operator_tokens (`+operatorTokenColumns+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		t.ID, t.Name, t.Role, t.Hash, encodeTime(t.CreatedAt), t.CreatedBy,
		encodeTime(t.ExpiresAt), encodeTime(t.RevokedAt))
	if err != nil {
		return fmt.Errorf("sqlite: create operator token %s: %w", t.ID, conflict(err))
	}
	return nil
}

// OperatorTokenByHash returns the token whose hash is hash, or
// fleet.ErrNotFound.
func (s *Store) OperatorTokenByHash(ctx context.Context, hash []byte) (fleet.OperatorToken, error) {
	row := s.reader.QueryRowContext(ctx, `SELECT `+operatorTokenColumns+`
		FROM operator_tokens WHERE hash = ?`, hash)
	t, err := scanOperatorToken(row)
	if err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			err = fleet.ErrNotFound
		}
		return fleet.OperatorToken{}, fmt.Errorf("sqlite: operator token by hash: %w", err)
	}
	return t, nil
}

// ListOperatorTokens returns all tokens, newest first.
func (s *Store) ListOperatorTokens(ctx context.Context) ([]fleet.OperatorToken, error) {
	tokens, err := collect(ctx, s.reader, `SELECT `+operatorTokenColumns+` FROM operator_tokens
		ORDER BY created_at DESC, id DESC`, nil, scanOperatorToken)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list operator tokens: %w", err)
	}
	return tokens, nil
}

// RevokeOperatorToken marks a token revoked, keeping the first revocation
// time, or returns fleet.ErrNotFound.
func (s *Store) RevokeOperatorToken(ctx context.Context, id string, at time.Time) error {
	res, err := s.exec(ctx, `UPDATE operator_tokens SET revoked_at = coalesce(revoked_at, ?)
		WHERE id = ?`, encodeTime(at), id)
	if err == nil {
		err = affected(res)
	}
	if err != nil {
		return fmt.Errorf("sqlite: revoke operator token %s: %w", id, err)
	}
	return nil
}

// CountActiveOperatorTokens counts tokens neither revoked nor expired at
// now.
func (s *Store) CountActiveOperatorTokens(ctx context.Context, now time.Time) (int, error) {
	var n int
	err := s.reader.QueryRowContext(ctx, `SELECT count(*) FROM operator_tokens
		WHERE revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?)`, encodeTime(now)).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("sqlite: count operator tokens: %w", err)
	}
	return n, nil
}
