// Package events is an in-process publish/subscribe bus for the client
// manager's events (client.connected, command.finished, ...), and the one
// Go type of each event. Publish never blocks: a subscriber that falls
// behind loses events, is told how many, and can watch [Subscription.Lagged]
// to give up at its first loss.
//
// Consumers switch on the type of [Event.Payload]; the wire form of an
// event (the JSON of GET /api/events, docs/api.md) is [Event.MarshalJSON].
package events

import (
	"encoding/json"
	"sync"
	"time"
)

// Event is one thing that happened.
type Event struct {
	// Seq increases by one per published event.
	Seq  uint64
	Time time.Time
	// Payload is one of this package's event types: AgentConnected,
	// AgentDisconnected, AgentEnrolled, AgentRevoked, CommandQueued,
	// CommandDispatched, CommandRunning, CommandOutput, CommandFinished.
	Payload Payload
}

// Type returns the event's wire name.
func (e Event) Type() Type { return e.Payload.Type() }

// wireEvent is the documented JSON of an event. Its field names predate
// the "agent" vocabulary and stay for compatibility.
type wireEvent struct {
	Seq       uint64    `json:"seq"`
	Type      Type      `json:"type"`
	Time      time.Time `json:"time"`
	AgentID   string    `json:"client_id,omitempty"`
	CommandID string    `json:"command_id,omitempty"`
	Data      any       `json:"data,omitempty"`
}

// MarshalJSON writes the event as {"seq","type","time","client_id",
// "command_id","data"}: the ids of the agent and command it concerns
// (omitted when none) and the type's own fields in "data" (omitted for
// types without any).
func (e Event) MarshalJSON() ([]byte, error) {
	agentID, commandID := e.Payload.subject()
	return json.Marshal(wireEvent{
		Seq: e.Seq, Type: e.Payload.Type(), Time: e.Time,
		AgentID: agentID, CommandID: commandID, Data: e.Payload.data(),
	})
}

// Subscription receives events on C until Close.
type Subscription struct {
	C      <-chan Event
	c      chan Event
	bus    *Bus
	lagged chan struct{}

	mu      sync.Mutex
	dropped uint64
	lag     bool // lagged is closed
}

// Lagged is closed the first time an event could not be queued for this
// subscriber because its buffer was full.
func (s *Subscription) Lagged() <-chan struct{} { return s.lagged }

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

// Bus fans events out to subscribers. Its methods are safe for concurrent
// use. The zero value is not usable; call New.
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
	s := &Subscription{C: c, c: c, bus: b, lagged: make(chan struct{})}
	b.mu.Lock()
	b.subs[s] = struct{}{}
	b.mu.Unlock()
	return s
}

// Publish stamps p with the next sequence number and the current time and
// delivers the event to every subscriber that has room; for the others it
// counts the loss (see Dropped and Lagged). It never blocks.
func (b *Bus) Publish(p Payload) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.seq++
	e := Event{Seq: b.seq, Time: time.Now().UTC(), Payload: p}
	for s := range b.subs {
		select {
		case s.c <- e:
		default:
			s.mu.Lock()
			if !s.lag {
				s.lag = true
				close(s.lagged)
			}
			s.dropped++
			s.mu.Unlock()
		}
	}
}
