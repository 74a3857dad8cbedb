package hub

import (
	"sync"
	"time"
)

// seenTimes collects the agents' latest heartbeat times between flushes:
// at most one entry per agent, however many heartbeats it sends.
type seenTimes struct {
	mu sync.Mutex
	at map[string]time.Time
}

// record notes that agentID was seen at t, keeping the latest time.
func (s *seenTimes) record(agentID string, t time.Time) {
	s.mu.Lock()
	if t.After(s.at[agentID]) {
		s.at[agentID] = t
	}
	s.mu.Unlock()
}

// take removes and returns the collected times, or nil if there are none.
func (s *seenTimes) take() map[string]time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.at) == 0 {
		return nil
	}
	m := s.at
	s.at = make(map[string]time.Time, len(m))
	return m
}

// restore puts back times that could not be written, keeping for each
// agent the later of them and any recorded since.
func (s *seenTimes) restore(m map[string]time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, t := range m {
		if t.After(s.at[id]) {
			s.at[id] = t
		}
	}
}

// flushLoop writes the collected heartbeat times every SeenInterval until
// the hub stops.
func (h *Hub) flushLoop() {
	defer close(h.flushed)
	t := time.NewTicker(h.cfg.SeenInterval)
	defer t.Stop()
	for {
		select {
		case <-h.stop:
			return
		case <-t.C:
		}
		h.flushSeen()
	}
}

// flushSeen writes the collected heartbeat times to the store in one
// SeenAgents call bounded by CallTimeout. On failure it keeps them for the
// next flush.
func (h *Hub) flushSeen() {
	batch := h.seen.take()
	if batch == nil {
		return
	}
	ctx, cancel := h.callCtx()
	defer cancel()
	if err := h.store.SeenAgents(ctx, batch); err != nil {
		h.log.Warn("recording agents' last-seen failed; retrying at the next flush", "agents", len(batch), "err", err)
		h.seen.restore(batch)
	}
}
