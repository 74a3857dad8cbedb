package sqlite

import (
	"reflect"
	"testing"
	"time"

	"github.com/home-console/client-manager/internal/fleet"
)

func TestOperatorTokens(t *testing.T) {
	s := openStore(t)
	ctx := t.Context()
	forever := fleet.OperatorToken{ID: "o1", Name: "ci", Role: "viewer", Hash: []byte("h1"),
		CreatedAt: at(0), CreatedBy: "loopback"}
	brief := fleet.OperatorToken{ID: "o2", Name: "oncall", Role: "operator", Hash: []byte("h2"),
		CreatedAt: at(time.Minute), CreatedBy: "ci", ExpiresAt: at(time.Hour)}
	for _, tok := range []fleet.OperatorToken{forever, brief} {
		if err := s.CreateOperatorToken(ctx, tok); err != nil {
			t.Fatal(err)
		}
	}
	wantErr(t, "duplicate hash", s.CreateOperatorToken(ctx, fleet.OperatorToken{ID: "o3", Role: "admin", Hash: []byte("h1")}), fleet.ErrConflict)

	got, err := s.ListOperatorTokens(ctx)
	if err != nil || !reflect.DeepEqual(got, []fleet.OperatorToken{brief, forever}) {
		t.Fatalf("ListOperatorTokens = %+v, %v", got, err)
	}
	byHash, err := s.OperatorTokenByHash(ctx, []byte("h2"))
	if err != nil || !reflect.DeepEqual(byHash, brief) {
		t.Fatalf("OperatorTokenByHash = %+v, %v", byHash, err)
	}
	_, err = s.OperatorTokenByHash(ctx, []byte("nope"))
	wantErr(t, "unknown hash", err, fleet.ErrNotFound)

	counts := []struct {
		name string
		now  time.Time
		want int
	}{
		{"both active", at(2 * time.Minute), 2},
		{"one expired", at(2 * time.Hour), 1},
	}
	for _, c := range counts {
		if n, err := s.CountActiveOperatorTokens(ctx, c.now); err != nil || n != c.want {
			t.Errorf("%s: CountActiveOperatorTokens = %d, %v; want %d", c.name, n, err, c.want)
		}
	}

	if err := s.RevokeOperatorToken(ctx, "o1", at(3*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeOperatorToken(ctx, "o1", at(4*time.Minute)); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "revoke unknown", s.RevokeOperatorToken(ctx, "zz", at(0)), fleet.ErrNotFound)
	revoked, err := s.OperatorTokenByHash(ctx, []byte("h1"))
	if err != nil || !revoked.RevokedAt.Equal(at(3*time.Minute)) || revoked.Active(at(5*time.Minute)) {
		t.Fatalf("revoked token = %+v, %v", revoked, err)
	}
	if n, _ := s.CountActiveOperatorTokens(ctx, at(2*time.Minute)); n != 1 {
		t.Errorf("active after revoke = %d, want 1", n)
	}
}
