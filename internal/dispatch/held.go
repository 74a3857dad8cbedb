package dispatch

import (
	"cmp"
	"context"
	"errors"
	"maps"
	"slices"
	"time"

	"github.com/home-console/client-manager/internal/fleet"
	"github.com/home-console/client-manager/pkg/agentproto"
)

// Retry backoff of held results: the first retry comes heldRetryMin after
// the store refused, each failed one doubles the wait up to heldRetryMax.
const (
	heldRetryMin = 500 * time.Millisecond
	heldRetryMax = 5 * time.Second
)

// heldOverhead is what a held result costs besides its output and error
// texts, counted against Config.MaxHeldBytes.
const heldOverhead = 256

// heldResult is a command's final result that its agent reported but the
// store refused (fleet.ErrStorageUnavailable): the Service keeps it in
// memory, retries it from the background loop, and acknowledges it to
// the agent once stored. Until then the command is never timed out.
type heldResult struct {
	cmd    fleet.Command // ID and AgentID
	result fleet.CommandResult
	size   int
	seq    uint64 // order of arrival
}

// hold keeps r for cmd until the store takes it, and reports whether it
// did: not when Config.MaxHeldBytes would be exceeded. s.mu must not be
// held.
func (s *Service) hold(cmd fleet.Command, r fleet.CommandResult) bool {
	size := heldOverhead + len(r.Stdout) + len(r.Stderr) + len(r.Error)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.held[cmd.ID] != nil {
		return true
	}
	if s.heldBytes+size > s.cfg.MaxHeldBytes {
		return false
	}
	s.heldSeq++
	s.held[cmd.ID] = &heldResult{cmd: cmd, result: r, size: size, seq: s.heldSeq}
	s.heldBytes += size
	if len(s.held) == 1 {
		s.heldWait = heldRetryMin
		s.heldNext = time.Now().Add(s.heldWait)
	}
	return true
}

// heldBy reports whether a result of agentID's command id is held.
func (s *Service) heldBy(agentID, id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := s.held[id]
	return h != nil && h.cmd.AgentID == agentID
}

// isHeld reports whether command id has a held result. s.mu is held.
func (s *Service) isHeld(id string) bool { return s.held[id] != nil }

// release forgets a held result.
func (s *Service) release(h *heldResult) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.held[h.cmd.ID] == h {
		delete(s.held, h.cmd.ID)
		s.heldBytes -= h.size
	}
}

// Held returns the number of results held until the store takes them.
func (s *Service) Held() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.held)
}

// retryHeld stores the held results, oldest first, once their retry is
// due. The first one the store still refuses ends the round and doubles
// the wait for the next (up to heldRetryMax); a round that stores them
// all resets it. Each stored result is acknowledged to its agent.
func (s *Service) retryHeld(ctx context.Context, now time.Time) {
	s.mu.Lock()
	if len(s.held) == 0 || now.Before(s.heldNext) {
		s.mu.Unlock()
		return
	}
	batch := slices.SortedFunc(maps.Values(s.held), func(a, b *heldResult) int { return cmp.Compare(a.seq, b.seq) })
	s.mu.Unlock()
	for _, h := range batch {
		err := s.finish(ctx, h.cmd, h.result)
		if err != nil && !errors.Is(err, fleet.ErrAlreadyFinal) && !errors.Is(err, fleet.ErrNotFound) {
			if ctx.Err() == nil {
				s.log.Warn("held command result still not stored", "command_id", h.cmd.ID, "agent_id", h.cmd.AgentID,
					"held", len(batch), "err", err)
			}
			s.mu.Lock()
			s.heldWait = min(2*s.heldWait, heldRetryMax)
			s.heldNext = now.Add(s.heldWait)
			s.mu.Unlock()
			return
		}
		s.release(h)
		s.log.Info("held command result stored", "command_id", h.cmd.ID, "agent_id", h.cmd.AgentID, "status", string(h.result.Status))
		_ = s.send(h.cmd.AgentID, agentproto.TypeResultAck, agentproto.CommandRef{CommandID: h.cmd.ID})
	}
	s.mu.Lock()
	s.heldWait, s.heldNext = heldRetryMin, time.Time{}
	s.mu.Unlock()
}
