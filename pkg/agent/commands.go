package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/home-console/client-manager/pkg/agentproto"
)

// dispatch handles one frame from the server. Unknown message types are
// ignored (a newer server may send more); malformed ones are answered with
// an error message, except stream messages: a malformed one, or one that
// breaks the stream rules, is returned as a protocol violation.
func (s *session) dispatch(msg []byte) error {
	var env agentproto.Envelope
	if err := json.Unmarshal(msg, &env); err != nil {
		s.sendError("invalid_message", "not a JSON envelope: "+err.Error(), "")
		return nil
	}
	if isStreamMessage(env.Type) {
		return s.dispatchStream(env)
	}
	s.dispatchCommand(env)
	return nil
}

// dispatchCommand handles the messages other than the stream messages.
func (s *session) dispatchCommand(env agentproto.Envelope) {
	switch env.Type {
	case agentproto.TypeHeartbeatAck:
	case agentproto.TypeCommandRequest:
		var req agentproto.CommandRequest
		if err := json.Unmarshal(env.Data, &req); err != nil || req.CommandID == "" {
			s.sendError("invalid_message", "command_request needs data with a command_id", env.ID)
			return
		}
		s.a.handleRequest(s, req)
	case agentproto.TypeCommandCancel, agentproto.TypeResultAck:
		var ref agentproto.CommandRef
		if err := json.Unmarshal(env.Data, &ref); err != nil || ref.CommandID == "" {
			s.sendError("invalid_message", env.Type+" needs data with a command_id", env.ID)
			return
		}
		if env.Type == agentproto.TypeCommandCancel {
			s.a.cancelCommand(ref.CommandID)
		} else {
			s.a.ackResult(ref.CommandID)
		}
	case agentproto.TypeError:
		var e agentproto.Error
		_ = json.Unmarshal(env.Data, &e)
		s.a.log.Warn("the server reported an error", "code", e.Code, "message", e.Message, "ref", e.Ref)
	default:
		s.a.log.Debug("ignoring message of unknown type", "type", env.Type)
	}
}

// handleRequest accepts a command and starts it, unless it is a duplicate:
// a command still running is not started again, and a finished one has its
// remembered result sent again.
func (a *Agent) handleRequest(s *session, req agentproto.CommandRequest) {
	s.send(agentproto.TypeCommandAccepted, agentproto.CommandRef{CommandID: req.CommandID})
	a.mu.Lock()
	if _, ok := a.running[req.CommandID]; ok {
		a.mu.Unlock()
		a.log.Debug("duplicate command_request: still running", "command_id", req.CommandID)
		return
	}
	if res, ok := a.results.get(req.CommandID); ok {
		a.mu.Unlock()
		a.log.Debug("duplicate command_request: sending its result again", "command_id", req.CommandID)
		s.sendResult(res)
		return
	}
	if res, refused := a.refuse(req); refused {
		a.mu.Unlock()
		a.log.Warn("command refused", "command_id", req.CommandID, "command", req.Command, "status", res.Status, "err", res.Error)
		a.finish(res)
		s.sendResult(res)
		return
	}
	timeout := a.cfg.DefaultTimeout
	if req.TimeoutMS > 0 {
		timeout = time.Duration(req.TimeoutMS) * time.Millisecond
	}
	ctx, cancel := context.WithCancelCause(a.cmdCtx)
	ctx, stopTimer := context.WithTimeoutCause(ctx, timeout, errCommandTimedOut)
	a.running[req.CommandID] = cancel
	a.cmdWG.Add(1)
	a.mu.Unlock()
	a.log.Info("running command", "command_id", req.CommandID, "command", req.Command, "args", len(req.Args), "timeout", timeout)
	go func() {
		defer a.cmdWG.Done()
		defer stopTimer()
		defer cancel(nil)
		a.execute(ctx, req, s.maxOutput)
	}()
}

// refuse returns a terminal result for a command that must not run: not
// allowed (rejected) or over the concurrency limit (failed). a.mu is held.
func (a *Agent) refuse(req agentproto.CommandRequest) (agentproto.CommandResult, bool) {
	now := time.Now().UTC()
	res := agentproto.CommandResult{CommandID: req.CommandID, ExitCode: -1, StartedAt: now, FinishedAt: now}
	if err := a.allow.Check(req.Command); err != nil {
		res.Status, res.Error = agentproto.ResultRejected, err.Error()
		return res, true
	}
	if len(a.running) >= a.cfg.MaxConcurrent {
		res.Status = agentproto.ResultFailed
		res.Error = fmt.Sprintf("agent busy: %d commands already running", len(a.running))
		return res, true
	}
	return agentproto.CommandResult{}, false
}

// execute runs an accepted command to its end and reports the result.
func (a *Agent) execute(ctx context.Context, req agentproto.CommandRequest, maxOutput int64) {
	res := a.run(ctx, req, maxOutput)
	a.finish(res)
	a.log.Info("command finished", "command_id", req.CommandID, "status", res.Status, "exit_code", res.ExitCode)
	if s := a.current.Load(); s != nil {
		s.sendResult(res)
	}
}

// run journals the start of a command, runs it and returns its result. A
// command whose start cannot be journaled fails without running.
func (a *Agent) run(ctx context.Context, req agentproto.CommandRequest, maxOutput int64) agentproto.CommandResult {
	res := agentproto.CommandResult{CommandID: req.CommandID, ExitCode: -1, StartedAt: time.Now().UTC()}
	if err := a.journal.Started(req.CommandID, res.StartedAt); err != nil {
		res.FinishedAt, res.Status, res.Error = res.StartedAt, agentproto.ResultFailed, "not started: "+err.Error()
		return res
	}
	out := newOutputCollector(req.CommandID, maxOutput, a.emitOutput)
	code, err := a.runner.Run(ctx, Command{ID: req.CommandID, Name: req.Command, Args: req.Args},
		out.writer(stdoutIdx), out.writer(stderrIdx))
	res.FinishedAt = time.Now().UTC()
	res.ExitCode = code
	res.Stdout, res.Stderr, res.Truncated = out.close()
	res.Status, res.Error = outcome(ctx, code, err)
	return res
}

// finish records a command's final result, in the journal first, and ends
// its running state.
func (a *Agent) finish(res agentproto.CommandResult) {
	if err := a.journal.Finished(res); err != nil {
		a.log.Error("result not journaled; it is kept in memory only", "command_id", res.CommandID, "err", err)
	}
	a.mu.Lock()
	delete(a.running, res.CommandID)
	a.storeResultLocked(res)
	a.mu.Unlock()
}

// outcome maps how a command ended to its result status and error text.
func outcome(ctx context.Context, code int, err error) (status, errText string) {
	if err == nil && code == 0 {
		return agentproto.ResultCompleted, ""
	}
	switch cause := context.Cause(ctx); {
	case errors.Is(cause, errCommandCancelled):
		return agentproto.ResultCancelled, cause.Error()
	case errors.Is(cause, errAgentStopped):
		return agentproto.ResultCancelled, "the agent stopped while the command ran"
	case errors.Is(cause, errCommandTimedOut):
		return agentproto.ResultTimedOut, "killed at its timeout"
	case err != nil:
		return agentproto.ResultFailed, err.Error()
	}
	return agentproto.ResultFailed, fmt.Sprintf("exited with code %d", code)
}

func (a *Agent) storeResultLocked(res agentproto.CommandResult) {
	if dropped := a.results.add(res, time.Now()); dropped != "" {
		a.log.Error("forgetting an unacknowledged result: too many results pending", "command_id", dropped)
	}
}

// outputMessagesPerSecond bounds the command_output messages an agent
// sends, summed over its commands (the server closes connections that send
// more than about 100 messages per second).
const outputMessagesPerSecond = 40

// emitOutput queues an output chunk if it can without blocking and within
// the agent's output message budget; it reports whether it did.
func (a *Agent) emitOutput(o agentproto.CommandOutput) bool {
	s := a.current.Load()
	if s == nil {
		return false
	}
	if _, ok := a.outputBudget.Allow(time.Now()); !ok {
		return false
	}
	return s.trySend(agentproto.TypeCommandOutput, o)
}

func (a *Agent) cancelCommand(id string) {
	a.mu.Lock()
	cancel := a.running[id]
	a.mu.Unlock()
	if cancel == nil {
		a.log.Debug("command_cancel for a command not running", "command_id", id)
		return
	}
	a.log.Info("cancelling command", "command_id", id)
	cancel(errCommandCancelled)
}

func (a *Agent) ackResult(id string) {
	a.mu.Lock()
	known := a.results.ack(id)
	a.mu.Unlock()
	if !known {
		a.log.Debug("result_ack for an unknown command", "command_id", id)
	} else if err := a.journal.Acked(id); err != nil {
		a.log.Warn("acknowledgement not journaled", "command_id", id, "err", err)
	}
}

// runningIDs returns the ids of the commands running now, sorted.
func (a *Agent) runningIDs() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	ids := make([]string, 0, len(a.running))
	for id := range a.running {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// unackedResults returns the results the server has not acknowledged and
// that were last sent at or before sentBefore, and records them as sent now.
func (a *Agent) unackedResults(sentBefore time.Time) []agentproto.CommandResult {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.results.takeUnacked(sentBefore, time.Now())
}
