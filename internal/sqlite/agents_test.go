package sqlite

import (
	"bytes"
	"database/sql"
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/home-console/client-manager/internal/fleet"
)

func TestAgentRoundTrip(t *testing.T) {
	s := openStore(t)
	ctx := t.Context()
	a := fleet.Agent{
		ID: "a1", Name: "Kitchen", Hostname: "pi-kitchen", OS: "linux", Arch: "arm64", Version: "1.2.3",
		Labels:    map[string]string{"room": "kitchen", "env": "prod"},
		Allowed:   []string{"uptime", "systemctl"},
		FirstSeen: at(0), LastSeen: at(time.Minute), LastAddr: "10.0.0.5:4242",
	}
	if err := s.CreateAgent(ctx, a, []byte("hash-1")); err != nil {
		t.Fatal(err)
	}
	checkAgent(t, s, a)
	checkSecret(t, s, "a1", []byte("hash-1"), false)

	facts := fleet.AgentFacts{Hostname: "pi-2", OS: "linux", Arch: "amd64", Version: "1.3.0",
		Labels: map[string]string{"room": "hall", "cpu": "arm"}, Allowed: nil}
	if err := s.TouchAgent(ctx, "a1", facts, "10.0.0.6:1", at(time.Hour)); err != nil {
		t.Fatal(err)
	}
	a.Hostname, a.Arch, a.Version, a.Allowed = "pi-2", "amd64", "1.3.0", []string{}
	a.Labels = map[string]string{"room": "kitchen", "env": "prod", "cpu": "arm"}
	a.LastAddr, a.LastSeen = "10.0.0.6:1", at(time.Hour)
	checkAgent(t, s, a)

	if err := s.SeenAgent(ctx, "a1", at(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	a.LastSeen = at(2 * time.Hour)
	checkAgent(t, s, a)

	if err := s.RevokeAgent(ctx, "a1", at(3*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeAgent(ctx, "a1", at(4*time.Hour)); err != nil {
		t.Fatalf("second revoke: %v", err)
	}
	a.Revoked, a.RevokedAt = true, at(3*time.Hour)
	checkAgent(t, s, a)
	checkSecret(t, s, "a1", []byte("hash-1"), true)
}

// TestHelloLabelsNeverOverrideEnrollment: the labels given at enrollment
// survive every hello; a hello adds labels of its own, which the next
// hello replaces; label selection keeps finding the agent.
func TestHelloLabelsNeverOverrideEnrollment(t *testing.T) {
	s := openStore(t)
	ctx := t.Context()
	enrolled := map[string]string{"room": "kitchen", "env": "prod"}
	if err := s.CreateAgent(ctx, fleet.Agent{ID: "a1", Labels: enrolled, FirstSeen: at(0)}, []byte("h")); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		hello map[string]string
		want  map[string]string
	}{
		{"hello without labels", nil, enrolled},
		{"hello adds a label", map[string]string{"cpu": "arm"}, map[string]string{"room": "kitchen", "env": "prod", "cpu": "arm"}},
		{"hello tries to change one", map[string]string{"room": "attic", "cpu": "x86"}, map[string]string{"room": "kitchen", "env": "prod", "cpu": "x86"}},
		{"next hello drops its own label", map[string]string{}, enrolled},
		{"hello repeats them", enrolled, enrolled},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			facts := fleet.AgentFacts{Hostname: "h", Labels: tt.hello}
			if err := s.TouchAgent(ctx, "a1", facts, "10.0.0.1:1", at(time.Duration(i)*time.Minute)); err != nil {
				t.Fatal(err)
			}
			a, err := s.Agent(ctx, "a1")
			if err != nil || !reflect.DeepEqual(a.Labels, tt.want) {
				t.Fatalf("labels = %v, %v; want %v", a.Labels, err, tt.want)
			}
			if _, n, err := s.ListAgents(ctx, fleet.AgentFilter{Labels: enrolled}); err != nil || n != 1 {
				t.Fatalf("agents with the enrollment labels = %d, %v; want 1", n, err)
			}
		})
	}
}

func TestAgentEmptyFactsAreEmptyNotNull(t *testing.T) {
	s := openStore(t)
	if err := s.CreateAgent(t.Context(), fleet.Agent{ID: "a"}, []byte("h")); err != nil {
		t.Fatal(err)
	}
	checkAgent(t, s, fleet.Agent{ID: "a", Labels: map[string]string{}, Allowed: []string{}})
}

func checkAgent(t *testing.T, s *Store, want fleet.Agent) {
	t.Helper()
	got, err := s.Agent(t.Context(), want.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Agent(%s) =\n%+v\nwant\n%+v", want.ID, got, want)
	}
}

func checkSecret(t *testing.T, s *Store, id string, wantHash []byte, wantRevoked bool) {
	t.Helper()
	hash, revoked, err := s.AgentSecretHash(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(hash, wantHash) || revoked != wantRevoked {
		t.Errorf("AgentSecretHash(%s) = %q, %v; want %q, %v", id, hash, revoked, wantHash, wantRevoked)
	}
}

func TestCreateAgentConflict(t *testing.T) {
	s := openStore(t)
	a := fleet.Agent{ID: "a1", Name: "first"}
	if err := s.CreateAgent(t.Context(), a, []byte("h")); err != nil {
		t.Fatal(err)
	}
	a.Name = "second"
	wantErr(t, "duplicate CreateAgent", s.CreateAgent(t.Context(), a, []byte("h2")), fleet.ErrConflict)
	checkAgent(t, s, fleet.Agent{ID: "a1", Name: "first", Labels: map[string]string{}, Allowed: []string{}})
}

func TestAgentNotFound(t *testing.T) {
	s := openStore(t)
	ctx := t.Context()
	tests := map[string]func() error{
		"Agent": func() error { _, err := s.Agent(ctx, "nope"); return err },
		"AgentSecretHash": func() error {
			_, _, err := s.AgentSecretHash(ctx, "nope")
			return err
		},
		"TouchAgent":  func() error { return s.TouchAgent(ctx, "nope", fleet.AgentFacts{}, "", at(0)) },
		"SeenAgent":   func() error { return s.SeenAgent(ctx, "nope", at(0)) },
		"RevokeAgent": func() error { return s.RevokeAgent(ctx, "nope", at(0)) },
	}
	for name, call := range tests {
		err := call()
		wantErr(t, name, err, fleet.ErrNotFound)
		if err != nil && !strings.Contains(err.Error(), "nope") {
			t.Errorf("%s: error %q does not name the agent", name, err)
		}
	}
}

// seedAgents stores agents a0..a4, first seen in that order:
//
//	a0 Kitchen  room=kitchen env=prod
//	a1 Hall     room=hall    env=prod
//	a2 Кухня    room=kitchen env=dev   hostname DACHA-PI
//	a3 Garage   (no labels)
//	a4 Old      room=kitchen env=prod  revoked
func seedAgents(t *testing.T, s *Store) {
	t.Helper()
	agents := []struct {
		name, hostname string
		labels         map[string]string
	}{
		{"Kitchen", "pi-1", map[string]string{"room": "kitchen", "env": "prod"}},
		{"Hall", "pi-2", map[string]string{"room": "hall", "env": "prod"}},
		{"Кухня", "DACHA-PI", map[string]string{"room": "kitchen", "env": "dev"}},
		{"Garage", "nuc", nil},
		{"Old", "pi-old", map[string]string{"room": "kitchen", "env": "prod"}},
	}
	for i, a := range agents {
		id := fmt.Sprintf("a%d", i)
		err := s.CreateAgent(t.Context(), fleet.Agent{ID: id, Name: a.name, Hostname: a.hostname,
			Labels: a.labels, FirstSeen: at(time.Duration(i) * time.Minute)}, []byte(id))
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := s.RevokeAgent(t.Context(), "a4", at(time.Hour)); err != nil {
		t.Fatal(err)
	}
}

func TestListAgents(t *testing.T) {
	s := openStore(t)
	seedAgents(t, s)
	tests := []struct {
		name      string
		filter    fleet.AgentFilter
		wantIDs   string
		wantTotal int
	}{
		{"all live", fleet.AgentFilter{}, "a0 a1 a2 a3", 4},
		{"include revoked", fleet.AgentFilter{IncludeRevoked: true}, "a0 a1 a2 a3 a4", 5},
		{"ids", fleet.AgentFilter{IDs: []string{"a3", "a1", "a4", "zz"}}, "a1 a3", 2},
		{"one label", fleet.AgentFilter{Labels: map[string]string{"room": "kitchen"}}, "a0 a2", 2},
		{"all labels must match", fleet.AgentFilter{Labels: map[string]string{"room": "kitchen", "env": "prod"}}, "a0", 1},
		{"label value mismatch", fleet.AgentFilter{Labels: map[string]string{"room": "attic"}}, "", 0},
		{"text in name, any case", fleet.AgentFilter{Text: "KITCH"}, "a0", 1},
		{"text in hostname", fleet.AgentFilter{Text: "pi-"}, "a0 a1", 2},
		{"text in id", fleet.AgentFilter{Text: "A3"}, "a3", 1},
		{"text, unicode case folding", fleet.AgentFilter{Text: "КУХ"}, "a2", 1},
		{"text, lower-case query of upper-case host", fleet.AgentFilter{Text: "dacha"}, "a2", 1},
		{"text and labels", fleet.AgentFilter{Text: "pi", Labels: map[string]string{"env": "prod"}, IncludeRevoked: true}, "a0 a1 a4", 3},
		{"page", fleet.AgentFilter{Limit: 2, Offset: 1}, "a1 a2", 4},
		{"page past the end", fleet.AgentFilter{Limit: 2, Offset: 10}, "", 4},
		{"negative offset", fleet.AgentFilter{Limit: 1, Offset: -3}, "a0", 4},
		{"filtered page", fleet.AgentFilter{Labels: map[string]string{"env": "prod"}, IncludeRevoked: true, Limit: 1, Offset: 1}, "a1", 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			agents, total, err := s.ListAgents(t.Context(), tt.filter)
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, a := range agents {
				ids = append(ids, a.ID)
			}
			if got := strings.Join(ids, " "); got != tt.wantIDs || total != tt.wantTotal {
				t.Errorf("got %q total %d, want %q total %d", got, total, tt.wantIDs, tt.wantTotal)
			}
		})
	}
}

func TestListAgentsLimits(t *testing.T) {
	s := openStore(t)
	const n = maxLimit + 1
	for i := range n {
		id := fmt.Sprintf("a%04d", i)
		if err := s.CreateAgent(t.Context(), fleet.Agent{ID: id, FirstSeen: at(0)}, []byte(id)); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		limit, offset int
		wantLen       int
		wantFirst     string
	}{
		{0, 0, defaultLimit, "a0000"},
		{-1, 0, defaultLimit, "a0000"},
		{maxLimit + 500, 0, maxLimit, "a0000"},
		{maxLimit + 500, maxLimit, 1, "a1000"},
	}
	for _, tt := range tests {
		agents, total, err := s.ListAgents(t.Context(), fleet.AgentFilter{Limit: tt.limit, Offset: tt.offset})
		if err != nil {
			t.Fatal(err)
		}
		if len(agents) != tt.wantLen || total != n || agents[0].ID != tt.wantFirst {
			t.Errorf("limit %d offset %d: %d agents from %s, total %d; want %d from %s, total %d",
				tt.limit, tt.offset, len(agents), agents[0].ID, total, tt.wantLen, tt.wantFirst, n)
		}
	}
}

func TestSeenAgents(t *testing.T) {
	s := openStore(t)
	ctx := t.Context()
	for _, id := range []string{"a", "b", "c"} {
		if err := s.CreateAgent(ctx, fleet.Agent{ID: id, LastSeen: at(time.Hour)}, []byte("h")); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.CreateAgent(ctx, fleet.Agent{ID: "never"}, []byte("h")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		at   map[string]time.Time
		want map[string]time.Time
	}{
		{"empty is a no-op", nil,
			map[string]time.Time{"a": at(time.Hour), "b": at(time.Hour), "c": at(time.Hour), "never": {}}},
		{"several ids, unknown ignored",
			map[string]time.Time{"a": at(2 * time.Hour), "b": at(3 * time.Hour), "never": at(time.Minute), "ghost": at(0)},
			map[string]time.Time{"a": at(2 * time.Hour), "b": at(3 * time.Hour), "c": at(time.Hour), "never": at(time.Minute)}},
		{"older time does not move it backwards",
			map[string]time.Time{"a": at(time.Hour), "b": at(4 * time.Hour), "c": {}},
			map[string]time.Time{"a": at(2 * time.Hour), "b": at(4 * time.Hour), "c": at(time.Hour), "never": at(time.Minute)}},
	} {
		if err := s.SeenAgents(ctx, tc.at); err != nil {
			t.Fatalf("%s: SeenAgents: %v", tc.name, err)
		}
		for id, want := range tc.want {
			a, err := s.Agent(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if !a.LastSeen.Equal(want) {
				t.Errorf("%s: %s last seen %v, want %v", tc.name, id, a.LastSeen, want)
			}
		}
	}
}

// TestMigrationMakesLabelsAuthoritative: an agent stored before the
// enrollment labels migration keeps its labels through the migration and
// the next hello.
func TestMigrationMakesLabelsAuthoritative(t *testing.T) {
	path := filepath.Join(t.TempDir(), "old.db")
	ms, err := migrations()
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(ms, func(m migration) bool { return strings.HasSuffix(m.name, "_enrollment_labels.sql") })
	if i < 0 {
		t.Fatal("no enrollment labels migration")
	}
	db, err := sql.Open("sqlite", dsn(path, "_txlock=immediate"))
	if err != nil {
		t.Fatal(err)
	}
	if err := migrateTo(t.Context(), db, ms[:i]); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(t.Context(), `INSERT INTO agents (id, labels, secret_hash) VALUES ('a1', '{"room":"lab"}', x'00')`); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	s := openPath(t, path)
	if err := s.TouchAgent(t.Context(), "a1", fleet.AgentFacts{Hostname: "h"}, "10.0.0.1:1", at(0)); err != nil {
		t.Fatal(err)
	}
	if a, err := s.Agent(t.Context(), "a1"); err != nil || a.Labels["room"] != "lab" {
		t.Fatalf("labels after migration and hello = %v, %v; want room=lab", a.Labels, err)
	}
}

// manyLabels returns n labels k000=v000, k001=v001, ...
func manyLabels(n int) map[string]string {
	labels := make(map[string]string, n)
	for i := range n {
		labels[fmt.Sprintf("k%03d", i)] = fmt.Sprintf("v%03d", i)
	}
	return labels
}

// TestLabelSelectorOfAnySize: a selector of 1,000 entries (one JSON
// expression per entry used to exceed SQLite's expression depth) selects
// exactly the agents having all of them, and agent_labels follows the
// labels a hello sets.
func TestLabelSelectorOfAnySize(t *testing.T) {
	s := openStore(t)
	ctx := t.Context()
	all := manyLabels(1000)
	for id, labels := range map[string]map[string]string{"full": all, "part": manyLabels(999), "none": nil} {
		if err := s.CreateAgent(ctx, fleet.Agent{ID: id, Labels: labels}, []byte(id)); err != nil {
			t.Fatal(err)
		}
	}
	wrong := manyLabels(1000)
	wrong["k500"] = "other"
	tests := []struct {
		name     string
		selector map[string]string
		want     string
	}{
		{"1000 entries", all, "full"},
		{"999 entries", manyLabels(999), "full part"},
		{"one value differs", wrong, ""},
		{"one entry", map[string]string{"k999": "v999"}, "full"},
	}
	for _, tt := range tests {
		if got := listedIDs(t, s, fleet.AgentFilter{Labels: tt.selector}); got != tt.want {
			t.Errorf("%s: got %q, want %q", tt.name, got, tt.want)
		}
	}
	// A hello adds k1000; the enrollment labels stay.
	facts := fleet.AgentFacts{Labels: map[string]string{"k1000": "v1000"}}
	if err := s.TouchAgent(ctx, "part", facts, "", at(0)); err != nil {
		t.Fatal(err)
	}
	if got := listedIDs(t, s, fleet.AgentFilter{Labels: map[string]string{"k1000": "v1000", "k000": "v000"}}); got != "part" {
		t.Errorf("after hello: got %q, want part", got)
	}
}

// listedIDs returns the ids ListAgents selects with f, sorted, joined by
// spaces.
func listedIDs(t *testing.T, s *Store, f fleet.AgentFilter) string {
	t.Helper()
	agents, total, err := s.ListAgents(t.Context(), f)
	if err != nil {
		t.Fatal(err)
	}
	ids := []string{}
	for _, a := range agents {
		ids = append(ids, a.ID)
	}
	slices.Sort(ids)
	if total != len(ids) {
		t.Errorf("total %d, %d listed", total, len(ids))
	}
	return strings.Join(ids, " ")
}

// TestMigrationIndexesExistingLabels: agents stored before agent_labels
// existed are found by label after the migration.
func TestMigrationIndexesExistingLabels(t *testing.T) {
	path := filepath.Join(t.TempDir(), "old.db")
	ms, err := migrations()
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(ms, func(m migration) bool { return strings.HasSuffix(m.name, "_agent_labels.sql") })
	if i < 0 {
		t.Fatal("no agent labels migration")
	}
	db, err := sql.Open("sqlite", dsn(path, "_txlock=immediate"))
	if err != nil {
		t.Fatal(err)
	}
	if err := migrateTo(t.Context(), db, ms[:i]); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(t.Context(), `INSERT INTO agents (id, labels, secret_hash)
		VALUES ('a1', '{"room":"lab","env":"prod"}', x'00'), ('a2', '{"room":"lab"}', x'00')`); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	s := openPath(t, path)
	if got := listedIDs(t, s, fleet.AgentFilter{Labels: map[string]string{"room": "lab", "env": "prod"}}); got != "a1" {
		t.Errorf("got %q, want a1", got)
	}
	if got := listedIDs(t, s, fleet.AgentFilter{Labels: map[string]string{"room": "lab"}}); got != "a1 a2" {
		t.Errorf("got %q, want a1 a2", got)
	}
}
