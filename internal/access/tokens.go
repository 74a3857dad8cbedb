package access

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/home-console/client-manager/internal/fleet"
	"github.com/home-console/client-manager/internal/secret"
)

// TokenPrefix starts every operator token, so a leaked one is easy to spot.
const TokenPrefix = "cmop_"

// StoreTokens keeps operator tokens in a fleet.OperatorTokenStore. Every
// request looks its token up, so a revocation takes effect at once.
type StoreTokens struct {
	Store fleet.OperatorTokenStore
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
}

var _ Tokens = (*StoreTokens)(nil)

func (s *StoreTokens) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// Authenticate implements Tokens.
func (s *StoreTokens) Authenticate(ctx context.Context, token string) (Principal, error) {
	t, err := s.Store.OperatorTokenByHash(ctx, secret.Hash(token))
	if errors.Is(err, fleet.ErrNotFound) {
		return Principal{}, ErrInvalidToken
	}
	if err != nil {
		return Principal{}, fmt.Errorf("authenticate operator token: %w", err)
	}
	if !t.Active(s.now()) {
		return Principal{}, ErrInvalidToken
	}
	role, err := ParseRole(t.Role)
	if err != nil {
		return Principal{}, fmt.Errorf("operator token %s: %w", t.ID, err)
	}
	name := t.Name
	if name == "" {
		name = t.ID
	}
	return Principal{Name: name, Role: role}, nil
}

// Configured implements Tokens: true once any active token exists.
func (s *StoreTokens) Configured(ctx context.Context) (bool, error) {
	n, err := s.Store.CountActiveOperatorTokens(ctx, s.now())
	if err != nil {
		return false, fmt.Errorf("count operator tokens: %w", err)
	}
	return n > 0, nil
}

// Create makes a token with role, valid for ttl (0: no expiry), and
// returns it (shown this once) with its stored record.
func (s *StoreTokens) Create(ctx context.Context, name string, role Role, ttl time.Duration, createdBy string) (string, fleet.OperatorToken, error) {
	token := TokenPrefix + secret.New()
	now := s.now().UTC()
	t := fleet.OperatorToken{
		ID:        secret.NewID("opt_"),
		Name:      name,
		Role:      role.String(),
		Hash:      secret.Hash(token),
		CreatedAt: now,
		CreatedBy: createdBy,
	}
	if ttl > 0 {
		t.ExpiresAt = now.Add(ttl)
	}
	if err := s.Store.CreateOperatorToken(ctx, t); err != nil {
		return "", fleet.OperatorToken{}, fmt.Errorf("create operator token: %w", err)
	}
	return token, t, nil
}
