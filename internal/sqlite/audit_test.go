package sqlite

import (
	"reflect"
	"testing"
	"time"

	"github.com/home-console/client-manager/internal/fleet"
)

func TestAudit(t *testing.T) {
	s := openStore(t)
	ctx := t.Context()
	entries := []fleet.AuditEntry{
		{Time: at(0), Actor: "alice", Role: "admin", Source: "10.0.0.1", Action: "agent.revoke", Target: "a1", Result: "ok"},
		{Time: at(time.Minute), Actor: "bob", Role: "operator", Source: "10.0.0.2", Action: "command.send", Target: "a1", Result: "ok", Detail: "uptime"},
		{Time: at(2 * time.Minute), Actor: "alice", Role: "admin", Source: "10.0.0.1", Action: "command.send", Target: "a2", Result: "denied"},
		{Time: at(2 * time.Minute), Actor: "loopback", Action: "token.create", Target: "t1", Result: "ok"},
	}
	for i, e := range entries {
		e.ID = 99 // ignored
		id, err := s.AppendAudit(ctx, e)
		if err != nil || id != int64(i+1) {
			t.Fatalf("AppendAudit = %d, %v; want id %d", id, err, i+1)
		}
		entries[i].ID = id
	}
	e := func(i ...int) []fleet.AuditEntry {
		out := []fleet.AuditEntry{}
		for _, i := range i {
			out = append(out, entries[i])
		}
		return out
	}
	tests := []struct {
		name      string
		filter    fleet.AuditFilter
		want      []fleet.AuditEntry
		wantTotal int
	}{
		{"all, newest first, ties by id", fleet.AuditFilter{}, e(3, 2, 1, 0), 4},
		{"actor", fleet.AuditFilter{Actor: "alice"}, e(2, 0), 2},
		{"action", fleet.AuditFilter{Action: "command.send"}, e(2, 1), 2},
		{"target", fleet.AuditFilter{Target: "a1"}, e(1, 0), 2},
		{"since is inclusive", fleet.AuditFilter{Since: at(time.Minute)}, e(3, 2, 1), 3},
		{"combined", fleet.AuditFilter{Actor: "alice", Action: "command.send"}, e(2), 1},
		{"page", fleet.AuditFilter{Limit: 2, Offset: 1}, e(2, 1), 4},
		{"no match", fleet.AuditFilter{Actor: "eve"}, e(), 0},
	}
	for _, tt := range tests {
		got, total, err := s.ListAudit(ctx, tt.filter)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, tt.want) || total != tt.wantTotal {
			t.Errorf("%s: got %+v total %d, want %+v total %d", tt.name, got, total, tt.want, tt.wantTotal)
		}
	}
}

// TestFinishAudit: an entry appended pending gets its outcome later; an
// unknown id is fleet.ErrNotFound.
func TestFinishAudit(t *testing.T) {
	s := openStore(t)
	ctx := t.Context()
	id, err := s.AppendAudit(ctx, fleet.AuditEntry{Time: at(0), Actor: "op", Action: "POST /api/commands/:id", Result: fleet.AuditPending})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.FinishAudit(ctx, id, "202", `"uname"`); err != nil {
		t.Fatal(err)
	}
	got, _, err := s.ListAudit(ctx, fleet.AuditFilter{})
	if err != nil || len(got) != 1 || got[0].Result != "202" || got[0].Detail != `"uname"` || got[0].Actor != "op" {
		t.Fatalf("entries %+v, %v", got, err)
	}
	wantErr(t, "finish unknown", s.FinishAudit(ctx, id+1, "200", ""), fleet.ErrNotFound)
}
