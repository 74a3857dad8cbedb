package dispatch

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/home-console/client-manager/internal/fleet"
	"github.com/home-console/client-manager/pkg/agentproto"
)

// Recover loads the commands a previous run left dispatched, running or
// pending, so the background loop times them out if their agents never
// come back; agents that do reconnect get them re-delivered (see
// Connected). A command whose cancel was requested gets its cancel
// deadline back: Config.CancelGrace after the request, or now if that
// passed. Queued commands need nothing: they wait in the store until
// delivery or expiry. Call it once at startup, before serving agents.
func (s *Service) Recover(ctx context.Context) error {
	live, err := s.store.LiveCommands(ctx, "")
	if err != nil {
		return fmt.Errorf("dispatch: recover: %w", err)
	}
	now := time.Now()
	inFlight, cancelling := 0, 0
	for _, cmd := range live {
		if cmd.Status != fleet.StatusQueued {
			since := cmd.DispatchedAt
			if since.IsZero() {
				since = cmd.CreatedAt
			}
			s.track(cmd.ID, cmd.AgentID, since.Add(cmd.Timeout+s.cfg.ResultGrace))
			inFlight++
		}
		if !cmd.CancelRequestedAt.IsZero() {
			s.requestCancel(cmd.ID, cmd.AgentID, later(now, cmd.CancelRequestedAt.Add(s.cfg.CancelGrace)))
			cancelling++
		}
	}
	s.log.Info("live commands recovered", "in_flight", inFlight, "queued", len(live)-inFlight, "cancelling", cancelling)
	return nil
}

// later returns the later of a and b.
func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// Run is the background loop; it returns when ctx ends. Every
// TickInterval it retries the results the store refused (when their
// backoff is due), expires queued commands past their TTL, finishes
// delivered commands whose result is overdue (timed_out) or whose cancel
// the agent did not confirm in time (cancelled), except commands whose
// result is held, and every PruneInterval it deletes finished commands
// older than Retention.
func (s *Service) Run(ctx context.Context) {
	t := time.NewTicker(s.cfg.TickInterval)
	defer t.Stop()
	var lastPrune time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		s.retryHeld(ctx, now)
		s.expireQueued(ctx, now)
		s.finishOverdue(ctx, now)
		if now.Sub(lastPrune) >= s.cfg.PruneInterval {
			lastPrune = now
			s.prune(ctx, now)
		}
	}
}

func (s *Service) expireQueued(ctx context.Context, now time.Time) {
	expired, err := s.store.ExpireCommands(ctx, now.UTC())
	if err != nil {
		if ctx.Err() == nil {
			s.log.Error("expiring queued commands failed", "err", err)
		}
		return
	}
	for _, cmd := range expired {
		reason := cmd.Error
		if reason == "" {
			reason = "expired before the agent connected"
		}
		s.finished(cmd.ID, cmd.AgentID, fleet.StatusExpired, reason)
	}
}

// finishOverdue finishes commands whose result deadline or cancel grace
// passed, and tells their agents to stop them.
func (s *Service) finishOverdue(ctx context.Context, now time.Time) {
	type overdue struct {
		cmd    fleet.Command
		result fleet.CommandResult
	}
	var due []overdue
	s.mu.Lock()
	for id, t := range s.live {
		cmd := fleet.Command{ID: id, AgentID: t.agentID}
		switch {
		case s.isHeld(id): // finished on the agent; its result waits for the store
		case !t.cancelBy.IsZero() && now.After(t.cancelBy):
			due = append(due, overdue{cmd, fleet.CommandResult{Status: fleet.StatusCancelled, Error: "cancel not confirmed by agent"}})
		case now.After(t.deadline):
			due = append(due, overdue{cmd, fleet.CommandResult{Status: fleet.StatusTimedOut, Error: "no result from agent within timeout"}})
		}
	}
	s.mu.Unlock()
	for _, d := range due {
		d.result.At = now.UTC()
		err := s.finish(ctx, d.cmd, d.result)
		switch {
		case errors.Is(err, fleet.ErrAlreadyFinal):
		case err != nil:
			if ctx.Err() == nil {
				s.log.Error("finishing an overdue command failed", "command_id", d.cmd.ID, "err", err)
			}
		default:
			_ = s.send(d.cmd.AgentID, agentproto.TypeCommandCancel, agentproto.CommandRef{CommandID: d.cmd.ID})
		}
	}
}

func (s *Service) prune(ctx context.Context, now time.Time) {
	n, err := s.store.PruneCommands(ctx, now.Add(-s.cfg.Retention).UTC())
	if err != nil {
		if ctx.Err() == nil {
			s.log.Error("pruning finished commands failed", "err", err)
		}
		return
	}
	if n > 0 {
		s.log.Info("finished commands pruned", "count", n, "retention", s.cfg.Retention.String())
	}
}
