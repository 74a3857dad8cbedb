package dispatch

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/home-console/client-manager/internal/drain"
	"github.com/home-console/client-manager/internal/events"
	"github.com/home-console/client-manager/internal/fleet"
	"github.com/home-console/client-manager/pkg/agentproto"
)

// readTimeout bounds the final read of Wait after its context ended.
const readTimeout = 5 * time.Second

// Wait blocks until the command is terminal, ctx ends or the server
// carried by ctx begins to drain (see internal/drain), and returns its
// state then. An ended wait is not an error: the current (live) state is
// returned, so callers can answer "still running". It returns
// ErrUnknownCommand for an unknown id. Waiting costs no polling: waiters
// are woken when this Service finishes the command.
func (s *Service) Wait(ctx context.Context, id string) (fleet.Command, error) {
	w := s.addWaiter(id)
	defer s.removeWaiter(id, w)
	cmd, err := s.command(ctx, id)
	if err != nil || cmd.Status.Terminal() {
		return cmd, err
	}
	watched, stop := drain.Watch(ctx)
	defer stop()
	select {
	case <-w.done:
	case <-watched.Done():
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), readTimeout)
	defer cancel()
	return s.command(rctx, id)
}

// Cancel asks for a command to stop. The request is stored first, so it
// survives a restart (see Recover and Connected). A queued or pending
// command is finished as cancelled at once. A dispatched or running one is
// sent command_cancel and finishes when the agent reports its result; if
// the agent does not within Config.CancelGrace, it is finished as
// cancelled without it. If the agent is offline, the command is finished
// as cancelled at once and the agent is told to stop it when it
// reconnects. Cancel returns the command's state after the request,
// ErrUnknownCommand, or an error matching fleet.ErrAlreadyFinal (with the
// final state) if it had already finished. A command whose result is held
// (it finished on the agent, and the store refused its result) is left as
// it is: its state is returned and its result is stored once the store
// takes it.
func (s *Service) Cancel(ctx context.Context, id, by string) (fleet.Command, error) {
	cmd, err := s.command(ctx, id)
	if err != nil {
		return fleet.Command{}, err
	}
	if cmd.Status.Terminal() {
		return cmd, fmt.Errorf("cancel %s: %w", id, fleet.ErrAlreadyFinal)
	}
	if s.heldBy(cmd.AgentID, id) {
		return cmd, nil // it finished on the agent; its result waits for the store
	}
	now := time.Now().UTC()
	err = s.store.RequestCancel(ctx, id, by, now)
	if errors.Is(err, fleet.ErrAlreadyFinal) {
		return s.alreadyFinal(ctx, id)
	}
	if err != nil {
		return cmd, fmt.Errorf("dispatch: cancel %s: %w", id, err)
	}
	reason := "cancelled by " + by
	sendErr := s.send(cmd.AgentID, agentproto.TypeCommandCancel, agentproto.CommandRef{CommandID: id})
	switch {
	case cmd.Status == fleet.StatusQueued || cmd.Status == fleet.StatusPending:
	case sendErr != nil:
		reason += " while the agent was offline"
	default:
		s.requestCancel(id, cmd.AgentID, now.Add(s.cfg.CancelGrace))
		s.log.Info("command cancel requested", "command_id", id, "agent_id", cmd.AgentID, "by", by)
		return s.command(ctx, id)
	}
	err = s.finish(ctx, cmd, fleet.CommandResult{Status: fleet.StatusCancelled, Error: reason, At: now})
	if errors.Is(err, fleet.ErrAlreadyFinal) {
		return s.alreadyFinal(ctx, id)
	}
	if err != nil {
		return cmd, fmt.Errorf("dispatch: cancel %s: %w", id, err)
	}
	return s.command(ctx, id)
}

// alreadyFinal returns the final state of command id with an error
// matching fleet.ErrAlreadyFinal.
func (s *Service) alreadyFinal(ctx context.Context, id string) (fleet.Command, error) {
	final, err := s.command(ctx, id)
	if err != nil {
		return final, err
	}
	return final, fmt.Errorf("cancel %s: %w", id, fleet.ErrAlreadyFinal)
}

// command reads a command, mapping fleet.ErrNotFound to ErrUnknownCommand.
func (s *Service) command(ctx context.Context, id string) (fleet.Command, error) {
	cmd, err := s.store.Command(ctx, id)
	if errors.Is(err, fleet.ErrNotFound) {
		return fleet.Command{}, ErrUnknownCommand
	}
	if err != nil {
		return fleet.Command{}, fmt.Errorf("dispatch: read command %s: %w", id, err)
	}
	return cmd, nil
}

// finish applies a terminal result once. On success it forgets the
// command, publishes command.finished and wakes its waiters; an error
// matching fleet.ErrAlreadyFinal means someone else finished it first.
func (s *Service) finish(ctx context.Context, cmd fleet.Command, r fleet.CommandResult) error {
	err := s.store.FinishCommand(ctx, cmd.ID, r)
	if err != nil && !errors.Is(err, fleet.ErrAlreadyFinal) {
		return err
	}
	s.untrack(cmd.ID)
	if err != nil {
		return err
	}
	s.finished(cmd.ID, cmd.AgentID, r.Status, r.Error)
	return nil
}

// finished announces a command that reached a terminal state.
func (s *Service) finished(id, agentID string, status fleet.CommandStatus, reason string) {
	s.bus.Publish(events.CommandFinished{AgentID: agentID, CommandID: id, Status: status, Error: reason})
	s.log.Info("command finished", "command_id", id, "agent_id", agentID, "status", string(status))
	s.mu.Lock()
	if w := s.waiters[id]; w != nil {
		close(w.done)
		delete(s.waiters, id)
	}
	s.mu.Unlock()
}

func (s *Service) addWaiter(id string) *waiter {
	s.mu.Lock()
	defer s.mu.Unlock()
	w := s.waiters[id]
	if w == nil {
		w = &waiter{done: make(chan struct{})}
		s.waiters[id] = w
	}
	w.n++
	return w
}

func (s *Service) removeWaiter(id string, w *waiter) {
	s.mu.Lock()
	defer s.mu.Unlock()
	w.n--
	if w.n == 0 && s.waiters[id] == w {
		delete(s.waiters, id)
	}
}

// track records (or moves) the result deadline of a delivered command,
// keeping a pending cancel request.
func (s *Service) track(id, agentID string, deadline time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t := s.live[id]; t != nil {
		t.deadline = deadline
		return
	}
	s.live[id] = &tracked{agentID: agentID, deadline: deadline}
}

// extendDeadline moves the result deadline of a tracked command to at if
// that is later.
func (s *Service) extendDeadline(id string, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t := s.live[id]; t != nil && at.After(t.deadline) {
		t.deadline = at
	}
}

// requestCancel arms the cancel deadline of a command: it is finished as
// cancelled after by unless its result comes first. An earlier deadline
// already armed is kept.
func (s *Service) requestCancel(id, agentID string, by time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.live[id]
	if t == nil {
		t = &tracked{agentID: agentID, deadline: by}
		s.live[id] = t
	}
	if t.cancelBy.IsZero() || by.Before(t.cancelBy) {
		t.cancelBy = by
	}
}

func (s *Service) untrack(id string) {
	s.mu.Lock()
	delete(s.live, id)
	s.mu.Unlock()
}

// owner returns the agent a tracked command was delivered to.
func (s *Service) owner(id string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.live[id]
	if t == nil {
		return "", false
	}
	return t.agentID, true
}
