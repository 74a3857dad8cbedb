package access

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/home-console/client-manager/internal/sqlite"
)

func TestStoreTokensLifecycle(t *testing.T) {
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "cm.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tokens := &StoreTokens{Store: st, Now: func() time.Time { return now }}
	ctx := t.Context()

	if ok, err := tokens.Configured(ctx); err != nil || ok {
		t.Fatalf("Configured on empty store = %v, %v", ok, err)
	}
	tok, rec, err := tokens.Create(ctx, "oncall", RoleOperator, time.Hour, "loopback")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(tok, TokenPrefix) || strings.Contains(string(rec.Hash), tok) {
		t.Fatalf("token %q / record %+v", tok, rec)
	}
	if ok, _ := tokens.Configured(ctx); !ok {
		t.Fatal("Configured = false after Create")
	}
	p, err := tokens.Authenticate(ctx, tok)
	if err != nil || p.Role != RoleOperator || p.Name != "oncall" {
		t.Fatalf("Authenticate = %+v, %v", p, err)
	}
	if _, err := tokens.Authenticate(ctx, tok+"x"); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("wrong token: %v", err)
	}

	now = now.Add(2 * time.Hour)
	if _, err := tokens.Authenticate(ctx, tok); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("expired token: %v", err)
	}

	tok2, rec2, err := tokens.Create(ctx, "", RoleAdmin, 0, "oncall")
	if err != nil {
		t.Fatal(err)
	}
	if p, err := tokens.Authenticate(ctx, tok2); err != nil || p.Name != rec2.ID {
		t.Fatalf("unnamed token principal = %+v, %v", p, err)
	}
	if err := st.RevokeOperatorToken(ctx, rec2.ID, now); err != nil {
		t.Fatal(err)
	}
	if _, err := tokens.Authenticate(ctx, tok2); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("revoked token: %v", err)
	}
	if ok, _ := tokens.Configured(ctx); ok {
		t.Fatal("Configured = true with only expired and revoked tokens")
	}
}
