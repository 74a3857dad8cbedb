// Package events is an in-process publish/subscribe bus for the client
// manager's events (client.connected, command.completed, ...). Publish never
// blocks: a subscriber that falls behind loses events and is told how many.
package events

import (
	"sync"
	"time"
)

// Event types.
const (
	ClientConnected    = "client.connected"
	ClientDisconnected = "client.disconnected"
	ClientEnrolled     = "client.enrolled"
	ClientRevoked      = "client.revoked"
	CommandQueued      = "command.queued"
	CommandDispatched  = "command.dispatched"
	CommandRunning     = "command.running"
	CommandOutput      = "command.output"
	CommandFinished    = "command.finished"
)

// Event is one thing that happened.
type Event struct {
	// Seq increases by one per published event.
	Seq  uint64    `json:"seq"`
	Type string    `json:"type"`
	Time time.Time `json:"time"`
	// ClientID and CommandID are set when the event concerns them.
	ClientID  string `json:"client_id,omitempty"`
	CommandID string `json:"command_id,omitempty"`
	Data      any    `json:"data,omitempty"`
}

// Subscription receives events on C until Close.
type Subscription struct {
	C       <-chan Event
	c       chan Event
	bus     *Bus
	mu      sync.Mutex
	dropped uint64
}

// Dropped returns how many events this subscriber missed because its
// buffer was full, and resets the count.
func (s *Subscription) Dropped() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.dropped
	s.dropped = 0
	return n
}

// Close unsubscribes. C is not closed; stop reading it.
func (s *Subscription) Close() {
	s.bus.mu.Lock()
	delete(s.bus.subs, s)
	s.bus.mu.Unlock()
}

// Bus fans events out to subscribers. The zero value is not usable; call New.
type Bus struct {
	mu   sync.Mutex
	seq  uint64
	subs map[*Subscription]struct{}
}

// New returns an empty bus.
func New() *Bus {
	return &Bus{subs: make(map[*Subscription]struct{})}
}

// Subscribe returns a subscription with room for buffer pending events.
func (b *Bus) Subscribe(buffer int) *Subscription {
	c := make(chan Event, buffer)
	s := &Subscription{C: c, c: c, bus: b}
	b.mu.Lock()
	b.subs[s] = struct{}{}
	b.mu.Unlock()
	return s
}

// Publish stamps e with a sequence number and time (if unset) and delivers
// it to every subscriber that has room. It never blocks.
func (b *Bus) Publish(e Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.seq++
	e.Seq = b.seq
	if e.Time.IsZero() {
		e.Time = time.Now().UTC()
	}
	for s := range b.subs {
		select {
		case s.c <- e:
		default:
			s.mu.Lock()
			s.dropped++
			s.mu.Unlock()
		}
	}
}
