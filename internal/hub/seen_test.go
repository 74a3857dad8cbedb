package hub_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/home-console/client-manager/internal/fleet"
	"github.com/home-console/client-manager/internal/hub"
	"github.com/home-console/client-manager/internal/hub/hubtest"
	"github.com/home-console/client-manager/pkg/agentproto"
)

// seenCounter counts the last-seen writes the hub makes, and can fail the
// batched ones.
type seenCounter struct {
	fleet.Store
	mu      sync.Mutex
	batches int // SeenAgents calls
	single  int // SeenAgent calls
	seen    map[string]int
	fail    bool
}

func (s *seenCounter) SeenAgents(ctx context.Context, at map[string]time.Time) error {
	s.mu.Lock()
	s.batches++
	fail := s.fail
	for id := range at {
		s.seen[id]++
	}
	s.mu.Unlock()
	if fail {
		return errors.New("injected failure")
	}
	return s.Store.SeenAgents(ctx, at)
}

func (s *seenCounter) SeenAgent(ctx context.Context, id string, at time.Time) error {
	s.mu.Lock()
	s.single++
	s.mu.Unlock()
	return s.Store.SeenAgent(ctx, id, at)
}

func (s *seenCounter) counts() (batches, single int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.batches, s.single
}

func startCounting(t *testing.T, cfg hub.Config) (*hubtest.Env, *seenCounter) {
	t.Helper()
	sc := &seenCounter{seen: map[string]int{}}
	env := hubtest.StartWith(t, cfg, func(s fleet.Store) fleet.Store {
		sc.Store = s
		return sc
	})
	return env, sc
}

func lastSeen(t *testing.T, env *hubtest.Env, id string) time.Time {
	t.Helper()
	a, err := env.Store.Agent(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return a.LastSeen
}

func TestHeartbeatsBatchLastSeen(t *testing.T) {
	const agents, beats, interval = 5, 10, 100 * time.Millisecond
	env, sc := startCounting(t, hub.Config{SeenInterval: interval})
	ids := make([]string, agents)
	conns := make([]*hubtest.Agent, agents)
	for i := range agents {
		var cred string
		ids[i], cred = env.NewAgent(t, fmt.Sprintf("a%d", i))
		conns[i] = env.Connect(t, cred)
	}
	start := time.Now()
	var hello []time.Time
	for _, id := range ids {
		hello = append(hello, lastSeen(t, env, id))
	}
	for b := range beats {
		for _, a := range conns {
			if err := a.Send(ctxT(t, 5*time.Second), agentproto.TypeHeartbeat, fmt.Sprintf("hb%d", b), nil); err != nil {
				t.Fatal(err)
			}
			a.Expect(t, agentproto.TypeHeartbeatAck, nil)
		}
		time.Sleep(interval / 5)
	}
	sent := time.Now()
	hubtest.Eventually(t, 5*time.Second, "last seen after the heartbeats", func() bool {
		for i, id := range ids {
			if ls := lastSeen(t, env, id); !ls.After(hello[i]) || ls.Before(sent.Add(-interval/2)) {
				return false
			}
		}
		return true
	})
	batches, single := sc.counts()
	if limit := int(time.Since(start)/interval) + 2; batches > limit || batches == 0 {
		t.Errorf("%d SeenAgents calls for %d×%d heartbeats over %v, want 1..%d", batches, agents, beats, time.Since(start), limit)
	}
	if single != 0 {
		t.Errorf("%d SeenAgent calls while connected, want 0", single)
	}
}

func TestShutdownFlushesLastSeen(t *testing.T) {
	env, sc := startCounting(t, hub.Config{SeenInterval: time.Hour})
	id, cred := env.NewAgent(t, "a")
	a := env.Connect(t, cred) // sends one heartbeat
	if b, _ := sc.counts(); b != 0 {
		t.Fatalf("%d SeenAgents calls before the interval", b)
	}
	go a.CloseStatus(context.Background()) // answers the close handshake
	if err := env.Hub.Shutdown(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if sc.batches != 1 || sc.seen[id] != 1 {
		t.Fatalf("shutdown made %d SeenAgents calls, agent in %d, want 1 and 1", sc.batches, sc.seen[id])
	}
	if sc.single != 1 {
		t.Fatalf("%d SeenAgent calls for one disconnect, want 1", sc.single)
	}
}

func TestLastSeenKeptAfterFailedFlush(t *testing.T) {
	const interval = 50 * time.Millisecond
	env, sc := startCounting(t, hub.Config{SeenInterval: interval})
	sc.mu.Lock()
	sc.fail = true
	sc.mu.Unlock()
	id, cred := env.NewAgent(t, "a")
	env.Connect(t, cred)
	hello := lastSeen(t, env, id)
	hubtest.Eventually(t, 5*time.Second, "a failed flush", func() bool {
		b, _ := sc.counts()
		return b >= 2
	})
	sc.mu.Lock()
	sc.fail = false
	sc.mu.Unlock()
	hubtest.Eventually(t, 5*time.Second, "last seen after a retried flush", func() bool {
		return lastSeen(t, env, id).After(hello)
	})
}
