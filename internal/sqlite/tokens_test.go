package sqlite

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/home-console/client-manager/internal/fleet"
)

func TestEnrollmentTokens(t *testing.T) {
	s := openStore(t)
	ctx := t.Context()
	older := fleet.EnrollmentToken{ID: "t1", Name: "kitchen", Hash: []byte("h1"), UsesLeft: 2,
		CreatedAt: at(0), CreatedBy: "admin"}
	newer := fleet.EnrollmentToken{ID: "t2", Name: "batch", Hash: []byte("h2"), UsesLeft: 1,
		ExpiresAt: at(time.Hour), CreatedAt: at(time.Minute), CreatedBy: "loopback"}
	for _, tok := range []fleet.EnrollmentToken{older, newer} {
		if err := s.CreateEnrollmentToken(ctx, tok); err != nil {
			t.Fatal(err)
		}
	}
	checkTokens(t, s, newer, older)

	got, err := enroll(s, "a1", "h1", at(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	older.UsesLeft = 1
	if !reflect.DeepEqual(got, older) {
		t.Errorf("EnrollAgent = %+v, want %+v", got, older)
	}
	checkTokens(t, s, newer, older)

	if err := s.DeleteEnrollmentToken(ctx, "t2"); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "second delete", s.DeleteEnrollmentToken(ctx, "t2"), fleet.ErrNotFound)
	checkTokens(t, s, older)
	_, err = enroll(s, "a2", "h2", at(0))
	wantErr(t, "use of deleted token", err, fleet.ErrTokenInvalid)
}

func checkTokens(t *testing.T, s *Store, want ...fleet.EnrollmentToken) {
	t.Helper()
	got, err := s.ListEnrollmentTokens(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ListEnrollmentTokens =\n%+v\nwant\n%+v", got, want)
	}
}

func TestCreateEnrollmentTokenConflict(t *testing.T) {
	s := openStore(t)
	tok := fleet.EnrollmentToken{ID: "t1", Hash: []byte("h1"), UsesLeft: 1, CreatedAt: at(0)}
	if err := s.CreateEnrollmentToken(t.Context(), tok); err != nil {
		t.Fatal(err)
	}
	sameID, sameHash := tok, tok
	sameID.Hash = []byte("h2")
	sameHash.ID = "t2"
	wantErr(t, "same id", s.CreateEnrollmentToken(t.Context(), sameID), fleet.ErrConflict)
	wantErr(t, "same hash", s.CreateEnrollmentToken(t.Context(), sameHash), fleet.ErrConflict)
}

// enroll enrolls agent id with the token whose hash is hash at now.
func enroll(s *Store, id, hash string, now time.Time) (fleet.EnrollmentToken, error) {
	return s.EnrollAgent(context.Background(), fleet.Enrollment{
		TokenHash: []byte(hash), At: now, Agent: fleet.Agent{ID: id, FirstSeen: now}, SecretHash: []byte("s"),
		Audit: func(tok fleet.EnrollmentToken) fleet.AuditEntry {
			return fleet.AuditEntry{Time: now, Actor: "enrollment-token:" + tok.ID, Action: "agent.enroll", Target: id}
		},
	})
}

func TestUseEnrollmentToken(t *testing.T) {
	expires := at(time.Hour)
	tests := []struct {
		name     string
		expires  time.Time
		uses     int
		hash     string
		now      time.Time
		want     error
		wantLeft int
	}{
		{"valid", expires, 3, "h", at(0), nil, 2},
		{"no expiry", time.Time{}, 1, "h", at(1000 * time.Hour), nil, 0},
		{"expires exactly now", expires, 3, "h", expires, fleet.ErrTokenInvalid, 3},
		{"expired", expires, 3, "h", expires.Add(time.Nanosecond), fleet.ErrTokenInvalid, 3},
		{"used up", expires, 0, "h", at(0), fleet.ErrTokenInvalid, 0},
		{"unknown hash", expires, 3, "other", at(0), fleet.ErrTokenInvalid, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openStore(t)
			tok := fleet.EnrollmentToken{ID: "t", Hash: []byte("h"), UsesLeft: tt.uses, ExpiresAt: tt.expires, CreatedAt: at(0)}
			if err := s.CreateEnrollmentToken(t.Context(), tok); err != nil {
				t.Fatal(err)
			}
			_, err := enroll(s, "a", tt.hash, tt.now)
			wantErr(t, "EnrollAgent", err, tt.want)
			tokens, err := s.ListEnrollmentTokens(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if tokens[0].UsesLeft != tt.wantLeft {
				t.Errorf("uses left = %d, want %d", tokens[0].UsesLeft, tt.wantLeft)
			}
		})
	}
}

func TestUseEnrollmentTokenConcurrent(t *testing.T) {
	const uses, users = 5, 20
	s := openStore(t)
	ctx := t.Context()
	tok := fleet.EnrollmentToken{ID: "t", Hash: []byte("h"), UsesLeft: uses, CreatedAt: at(0)}
	if err := s.CreateEnrollmentToken(ctx, tok); err != nil {
		t.Fatal(err)
	}
	var ok, invalid atomic.Int32
	var wg sync.WaitGroup
	for i := range users {
		wg.Go(func() {
			_, err := enroll(s, fmt.Sprintf("a%d", i), "h", at(0))
			switch {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, fleet.ErrTokenInvalid):
				invalid.Add(1)
			default:
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if ok.Load() != uses || invalid.Load() != users-uses {
		t.Errorf("%d uses succeeded and %d were refused, want %d and %d", ok.Load(), invalid.Load(), uses, users-uses)
	}
}

// TestEnrollAgentIsOneTransaction: an enrollment writes the token's use,
// the agent and its audit entry together; when the audit entry cannot be
// written, none of them is (the token keeps its use).
func TestEnrollAgentIsOneTransaction(t *testing.T) {
	s := openStore(t)
	ctx := t.Context()
	if err := s.CreateEnrollmentToken(ctx, fleet.EnrollmentToken{ID: "t", Name: "n", Hash: []byte("h"), UsesLeft: 2}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.writer.ExecContext(ctx, `CREATE TEMP TRIGGER no_audit BEFORE INSERT ON audit
		BEGIN SELECT RAISE(ABORT, 'audit refused'); END`); err != nil {
		t.Fatal(err)
	}
	if _, err := enroll(s, "refused", "h", at(0)); err == nil {
		t.Fatal("enrollment succeeded without its audit entry")
	}
	if _, err := s.Agent(ctx, "refused"); !errors.Is(err, fleet.ErrNotFound) {
		t.Errorf("agent of the refused enrollment: %v, want not found", err)
	}
	if _, err := s.writer.ExecContext(ctx, `DROP TRIGGER temp.no_audit`); err != nil {
		t.Fatal(err)
	}
	tok, err := enroll(s, "a1", "h", at(0))
	if err != nil || tok.UsesLeft != 1 || tok.ID != "t" {
		t.Fatalf("enroll = %+v, %v; want token t with 1 use left (the refused one spent none)", tok, err)
	}
	entries, _, err := s.ListAudit(ctx, fleet.AuditFilter{})
	if err != nil || len(entries) != 1 || entries[0].Target != "a1" || entries[0].Actor != "enrollment-token:t" {
		t.Fatalf("audit = %+v, %v", entries, err)
	}
	if _, err := s.Agent(ctx, "a1"); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "same agent id", func() error { _, err := enroll(s, "a1", "h", at(0)); return err }(), fleet.ErrConflict)
}
