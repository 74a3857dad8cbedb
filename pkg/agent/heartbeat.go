package agent

import (
	"context"
	"sync"
	"time"
)

// heartbeatSlots is the number of slots of a HeartbeatGroup's timing wheel.
const heartbeatSlots = 512

// HeartbeatGroup drives the heartbeats of many agents in one process from a
// single goroutine, instead of one timer per connection: a timing wheel
// that advances one slot per tick and signals the connections due in that
// slot. Heartbeats are sent up to one tick late; connections that joined at
// different times stay spread over the interval. Set it as
// [Config.Heartbeats] of each agent and call [HeartbeatGroup.Run].
// A HeartbeatGroup is safe for concurrent use.
type HeartbeatGroup struct {
	tick time.Duration

	mu    sync.Mutex
	now   int64 // ticks since Run started
	slots [heartbeatSlots]map[*heartbeatMember]struct{}
}

type heartbeatMember struct {
	signal chan<- struct{}
	every  int64 // interval in ticks
	due    int64 // tick at which the next signal is due
	slot   int
}

// NewHeartbeatGroup returns a group whose wheel advances every tick; zero
// means 100ms. The tick bounds how late a heartbeat may be.
func NewHeartbeatGroup(tick time.Duration) *HeartbeatGroup {
	if tick <= 0 {
		tick = 100 * time.Millisecond
	}
	return &HeartbeatGroup{tick: tick}
}

// Run advances the wheel until ctx is done, then returns ctx's error. It
// blocks; run it in a goroutine of its own, once.
func (g *HeartbeatGroup) Run(ctx context.Context) error {
	t := time.NewTicker(g.tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			g.advance()
		}
	}
}

// advance moves the wheel one tick and signals the members due.
func (g *HeartbeatGroup) advance() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.now++
	slot := g.slots[g.now%heartbeatSlots]
	for m := range slot {
		if m.due > g.now {
			continue // due in a later turn of the wheel
		}
		select {
		case m.signal <- struct{}{}:
		default: // the previous signal is still pending
		}
		delete(slot, m)
		m.due = g.now + m.every
		g.placeLocked(m)
	}
}

// add registers a connection to be signalled every interval, the first
// time one interval from now. Signals are sent without blocking.
func (g *HeartbeatGroup) add(interval time.Duration, signal chan<- struct{}) *heartbeatMember {
	every := max(int64(interval/g.tick), 1)
	g.mu.Lock()
	defer g.mu.Unlock()
	m := &heartbeatMember{signal: signal, every: every, due: g.now + every}
	g.placeLocked(m)
	return m
}

// remove unregisters a connection.
func (g *HeartbeatGroup) remove(m *heartbeatMember) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.slots[m.slot], m)
}

func (g *HeartbeatGroup) placeLocked(m *heartbeatMember) {
	m.slot = int(m.due % heartbeatSlots)
	if g.slots[m.slot] == nil {
		g.slots[m.slot] = make(map[*heartbeatMember]struct{})
	}
	g.slots[m.slot][m] = struct{}{}
}
