package sqlite

import (
	"fmt"
	"testing"
	"time"

	"github.com/home-console/client-manager/internal/fleet"
)

func BenchmarkCreateAndFinishCommand(b *testing.B) {
	s := openStore(b)
	ctx := b.Context()
	r := fleet.CommandResult{Status: fleet.StatusCompleted, ExitCode: new(0), Stdout: "ok", At: at(time.Second)}
	i := 0
	for b.Loop() {
		id := fmt.Sprintf("c%d", i)
		i++
		c := fleet.Command{ID: id, AgentID: "a1", Command: "uptime", Args: []string{"-p"},
			Status: fleet.StatusPending, CreatedAt: at(0)}
		if err := s.CreateCommand(ctx, c); err != nil {
			b.Fatal(err)
		}
		if err := s.FinishCommand(ctx, id, r); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkListAgents(b *testing.B) {
	const n = 10000
	s := openStore(b)
	ctx := b.Context()
	rooms := []string{"kitchen", "hall", "garage", "attic"}
	for i := range n {
		id := fmt.Sprintf("agent-%05d", i)
		a := fleet.Agent{ID: id, Name: "Agent " + id, Hostname: "host-" + id, FirstSeen: at(time.Duration(i)),
			Labels: map[string]string{"room": rooms[i%len(rooms)], "env": "prod"}}
		if err := s.CreateAgent(ctx, a, []byte(id)); err != nil {
			b.Fatal(err)
		}
	}
	for _, bm := range []struct {
		name   string
		filter fleet.AgentFilter
	}{
		{"first page", fleet.AgentFilter{}},
		{"last page", fleet.AgentFilter{Offset: n - 100}},
		{"label", fleet.AgentFilter{Labels: map[string]string{"room": "attic"}}},
		{"two labels", fleet.AgentFilter{Labels: map[string]string{"room": "attic", "env": "prod"}}},
		{"64 labels", fleet.AgentFilter{Labels: manyLabels(64)}},
		{"text", fleet.AgentFilter{Text: "HOST-0999"}},
	} {
		b.Run(bm.name, func(b *testing.B) {
			for b.Loop() {
				if _, _, err := s.ListAgents(ctx, bm.filter); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkSeenAgents1000(b *testing.B) {
	const n = 1000
	s := openStore(b)
	ctx := b.Context()
	seen := make(map[string]time.Time, n)
	for i := range n {
		id := fmt.Sprintf("agent-%04d", i)
		if err := s.CreateAgent(ctx, fleet.Agent{ID: id, FirstSeen: at(0)}, []byte(id)); err != nil {
			b.Fatal(err)
		}
		seen[id] = at(0)
	}
	d := time.Duration(0)
	for b.Loop() {
		d += time.Second
		for id := range seen {
			seen[id] = at(d)
		}
		if err := s.SeenAgents(ctx, seen); err != nil {
			b.Fatal(err)
		}
	}
}
