package dispatch

import (
	"context"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/home-console/client-manager/internal/events"
	"github.com/home-console/client-manager/internal/fleet"
	"github.com/home-console/client-manager/pkg/agentproto"
)

// The methods in this file implement hub.CommandSink: the hub calls them
// from an agent's connection, one message at a time per agent.

// Connected delivers the agent's live commands: every queued, pending or
// dispatched one it does not report as running is (re)sent and marked
// dispatched. A live command whose cancel was requested is sent
// command_cancel instead, whether or not the agent reports it. Commands it
// reports running that the server has already finished (cancelled while
// the agent was offline, say) or never knew are sent command_cancel too. A
// command submitted while the hello is being handled can be sent twice, by
// Submit and by Connected: delivery is at-least-once and agents
// de-duplicate by id.
func (s *Service) Connected(ctx context.Context, agentID string, running []string) {
	live, err := s.store.LiveCommands(ctx, agentID)
	if err != nil {
		s.log.Error("loading live commands on connect failed; they will be delivered on the next connect or time out",
			"agent_id", agentID, "err", err)
		return
	}
	reported := make(map[string]bool, len(running))
	for _, id := range running {
		reported[id] = true
	}
	now := time.Now()
	for i := range live {
		cmd := &live[i]
		onAgent := reported[cmd.ID]
		delete(reported, cmd.ID)
		if onAgent && cmd.Status != fleet.StatusRunning {
			_ = s.store.MarkRunning(ctx, cmd.ID)
		}
		switch {
		case s.heldBy(agentID, cmd.ID): // finished; its result waits for the store
		case !cmd.CancelRequestedAt.IsZero():
			_ = s.send(agentID, agentproto.TypeCommandCancel, agentproto.CommandRef{CommandID: cmd.ID})
		case onAgent || !deliverable(*cmd, now): // nothing to send
		default:
			if err := s.deliver(ctx, cmd); err != nil {
				s.log.Error("re-delivering a command failed", "command_id", cmd.ID, "agent_id", agentID, "err", err)
			}
		}
	}
	for id := range reported {
		_ = s.send(agentID, agentproto.TypeCommandCancel, agentproto.CommandRef{CommandID: id})
	}
}

// deliverable reports whether Connected should (re)send a live command the
// agent does not report running: a running one is not (its result is due,
// or it times out), nor a queued one past its TTL (the loop expires it).
func deliverable(cmd fleet.Command, now time.Time) bool {
	switch cmd.Status {
	case fleet.StatusQueued:
		return cmd.ExpiresAt.IsZero() || !now.After(cmd.ExpiresAt)
	case fleet.StatusPending, fleet.StatusDispatched:
		return true
	}
	return false
}

// Accepted moves a delivered command to running.
func (s *Service) Accepted(ctx context.Context, agentID, commandID string) {
	if !s.owns(ctx, agentID, commandID) {
		return
	}
	err := s.store.MarkRunning(ctx, commandID)
	switch {
	case errors.Is(err, fleet.ErrAlreadyFinal):
	case err != nil:
		s.log.Warn("marking a command running failed", "command_id", commandID, "err", err)
	default:
		s.bus.Publish(events.CommandRunning{AgentID: agentID, CommandID: commandID})
	}
}

// Output publishes a chunk of a live command's output as command.output.
// Chunks are not stored: the result carries the whole (bounded) output.
func (s *Service) Output(_ context.Context, agentID string, out agentproto.CommandOutput) {
	if owner, ok := s.owner(out.CommandID); !ok || owner != agentID {
		return
	}
	s.bus.Publish(events.CommandOutput{AgentID: agentID, CommandID: out.CommandID, Data: out.Data, Seq: out.Seq, Stream: out.Stream})
}

// Result records a command's terminal report exactly once. It returns nil
// when stored, an error matching fleet.ErrAlreadyFinal when the command
// had already finished (the report is ignored), ErrUnknownCommand when the
// command does not exist or belongs to another agent, or a store error
// (the agent should keep the result and re-send it). When the store
// refuses the result (fleet.ErrStorageUnavailable), the Service holds it
// in memory if Config.MaxHeldBytes allows, retries it and sends
// result_ack itself once it is stored; the error returned then says so.
func (s *Service) Result(ctx context.Context, agentID string, res agentproto.CommandResult) error {
	if s.heldBy(agentID, res.CommandID) {
		return fmt.Errorf("dispatch: result %s: %w", res.CommandID, errHeld)
	}
	cmd, err := s.command(ctx, res.CommandID)
	if err != nil {
		return err
	}
	if cmd.AgentID != agentID {
		s.log.Warn("agent reported a result for another agent's command", "agent_id", agentID, "command_id", res.CommandID)
		return ErrUnknownCommand
	}
	if cmd.Status.Terminal() {
		return fleet.ErrAlreadyFinal
	}
	r := s.mapResult(res)
	err = s.finish(ctx, cmd, r)
	if errors.Is(err, fleet.ErrStorageUnavailable) {
		if s.hold(cmd, r) {
			s.log.Warn("command result held until the store takes it", "command_id", cmd.ID, "agent_id", agentID, "err", err)
			return fmt.Errorf("dispatch: result %s: %w: %w", res.CommandID, errHeld, err)
		}
		s.extendDeadline(cmd.ID, time.Now().Add(s.cfg.RefusedResultGrace))
	}
	if err != nil {
		return fmt.Errorf("dispatch: result %s: %w", res.CommandID, err)
	}
	return nil
}

// errHeld says that a result the store refused is held (see held.go).
var errHeld = errors.New("held until the store takes it; acknowledged then")

// owns reports whether commandID is a command of agentID.
func (s *Service) owns(ctx context.Context, agentID, commandID string) bool {
	if owner, ok := s.owner(commandID); ok {
		return owner == agentID
	}
	cmd, err := s.store.Command(ctx, commandID)
	return err == nil && cmd.AgentID == agentID
}

// mapResult turns an agent's report into a stored result, bounding the
// output to Config.MaxOutputBytes.
func (s *Service) mapResult(r agentproto.CommandResult) fleet.CommandResult {
	exit := r.ExitCode
	out := fleet.CommandResult{ExitCode: &exit, Error: r.Error, At: time.Now().UTC()}
	switch r.Status {
	case agentproto.ResultCompleted:
		out.Status = fleet.StatusCompleted
	case agentproto.ResultFailed:
		out.Status = fleet.StatusFailed
		if out.Error == "" {
			out.Error = fmt.Sprintf("exited with code %d", exit)
		}
	case agentproto.ResultCancelled:
		out.Status = fleet.StatusCancelled
		if out.Error == "" {
			out.Error = "cancelled on the agent"
		}
	case agentproto.ResultTimedOut:
		out.Status = fleet.StatusTimedOut
		if out.Error == "" {
			out.Error = "killed by the agent at its timeout"
		}
	case agentproto.ResultRejected:
		out.Status, out.ExitCode = fleet.StatusFailed, nil
		out.Error = "rejected by the agent"
		if r.Error != "" {
			out.Error += ": " + r.Error
		}
	default:
		out.Status = fleet.StatusFailed
		out.Error = fmt.Sprintf("agent reported unknown status %q", truncateUTF8(r.Status, 64))
	}
	var cut bool
	out.Stdout, out.Stderr, cut = boundOutput(r.Stdout, r.Stderr, s.cfg.MaxOutputBytes)
	out.Truncated = r.Truncated || cut
	return out
}

// boundOutput cuts stdout and stderr to at most limit bytes together,
// sharing the room fairly so a flood on one stream keeps the other.
func boundOutput(stdout, stderr string, limit int) (string, string, bool) {
	if len(stdout)+len(stderr) <= limit {
		return stdout, stderr, false
	}
	half := limit / 2
	so, se := half, limit-half
	switch {
	case len(stdout) < half:
		so, se = len(stdout), limit-len(stdout)
	case len(stderr) < limit-half:
		so, se = limit-len(stderr), len(stderr)
	}
	return truncateUTF8(stdout, so), truncateUTF8(stderr, se), true
}

// truncateUTF8 cuts s to at most n bytes without splitting a character.
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
