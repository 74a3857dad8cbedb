// Package dispatch runs commands on agents: it validates and stores each
// command before delivering it, re-delivers live commands when their agent
// reconnects (at-least-once; agents de-duplicate by command id), records
// exactly one terminal result per command, and enforces queue TTLs, run
// timeouts and cancel confirmation from one background loop.
//
// A command accepted by Submit is never silently lost: it ends completed,
// failed, cancelled, timed_out or expired, with a reason, across restarts
// (see Recover).
package dispatch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/home-console/client-manager/internal/events"
	"github.com/home-console/client-manager/internal/fleet"
	"github.com/home-console/client-manager/internal/secret"
	"github.com/home-console/client-manager/pkg/agentproto"
)

// Errors returned by the Service, checked with errors.Is. They are
// fleet's domain errors, so callers need not import this package. Cancel
// of a finished command returns an error matching fleet.ErrAlreadyFinal.
var (
	// ErrInvalidRequest means Submit's request is malformed (400).
	ErrInvalidRequest = fleet.ErrInvalidCommand
	// ErrUnknownCommand means no command has the id, or it belongs to
	// another agent (404). It matches fleet.ErrNotFound too.
	ErrUnknownCommand = fmt.Errorf("unknown command: %w", fleet.ErrNotFound)
)

// Sender delivers messages to connected agents (*hub.Hub implements it).
// Send must not block.
type Sender interface {
	Send(agentID string, env agentproto.Envelope) error
	Online(agentID string) bool
}

// Config tunes a Service. Zero fields take the defaults noted on each.
type Config struct {
	// DefaultTimeout applies when a request has none (default 30s);
	// MaxTimeout is the largest allowed (default 1h).
	DefaultTimeout, MaxTimeout time.Duration
	// DefaultTTL is how long a command queued for an offline agent waits
	// (default 1h); MaxTTL is the largest allowed (default 7 days).
	DefaultTTL, MaxTTL time.Duration
	// ResultGrace is added to a command's timeout before the server gives
	// up on its result and finishes it timed_out (default 15s).
	ResultGrace time.Duration
	// CancelGrace is how long the agent has to confirm a cancel before the
	// command is finished as cancelled anyway (default 10s).
	CancelGrace time.Duration
	// MaxOutputBytes bounds stdout+stderr kept per command (default
	// 512 KiB); beyond it both are cut and Truncated is set.
	MaxOutputBytes int
	// MaxArgs bounds the argument count (default 256) and MaxArgvBytes the
	// size of command plus arguments (default 64 KiB).
	MaxArgs, MaxArgvBytes int
	// Retention is how long finished commands are kept (default 30 days),
	// pruned every PruneInterval (default 1h).
	Retention, PruneInterval time.Duration
	// TickInterval is the period of the background loop (default 1s).
	TickInterval time.Duration
	// MaxHeldBytes bounds the results kept in memory while the store
	// refuses them (default 32 MiB; each counts its output and error
	// texts plus 256 bytes). A result beyond it is not held: the agent
	// keeps it and sends it again.
	MaxHeldBytes int
	// RefusedResultGrace is how long a command whose result the store
	// refused and the Service could not hold waits for the agent to send
	// it again before it may time out (default 2m; agents re-send
	// unacknowledged results every liveness timeout, 45 s by default).
	RefusedResultGrace time.Duration
}

func (c Config) withDefaults() Config {
	def := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&c.DefaultTimeout, 30*time.Second)
	def(&c.MaxTimeout, time.Hour)
	def(&c.DefaultTTL, time.Hour)
	def(&c.MaxTTL, 7*24*time.Hour)
	def(&c.ResultGrace, 15*time.Second)
	def(&c.CancelGrace, 10*time.Second)
	def(&c.Retention, 30*24*time.Hour)
	def(&c.PruneInterval, time.Hour)
	def(&c.TickInterval, time.Second)
	def(&c.RefusedResultGrace, 2*time.Minute)
	if c.MaxHeldBytes <= 0 {
		c.MaxHeldBytes = 32 << 20
	}
	if c.MaxOutputBytes <= 0 {
		c.MaxOutputBytes = 512 << 10
	}
	if c.MaxArgs <= 0 {
		c.MaxArgs = 256
	}
	if c.MaxArgvBytes <= 0 {
		c.MaxArgvBytes = 64 << 10
	}
	return c
}

// Request asks for a command to run on an agent (see
// fleet.CommandRequest; Timeout 0 means Config.DefaultTimeout, TTL 0
// Config.DefaultTTL).
type Request = fleet.CommandRequest

// Service dispatches commands. Its methods are safe for concurrent use.
type Service struct {
	store fleet.Store
	hub   Sender
	bus   *events.Bus
	log   *slog.Logger
	cfg   Config

	mu      sync.Mutex
	live    map[string]*tracked // delivered, unfinished commands
	waiters map[string]*waiter
	// held are results the store refused, by command id (see held.go),
	// heldBytes their size, heldSeq the last arrival number; heldNext is
	// when to retry them and heldWait the current backoff.
	held      map[string]*heldResult
	heldBytes int
	heldSeq   uint64
	heldNext  time.Time
	heldWait  time.Duration
}

// tracked is the in-memory state of a live, non-queued command.
type tracked struct {
	agentID  string
	deadline time.Time // finish as timed_out after this
	cancelBy time.Time // finish as cancelled after this; zero if no cancel asked
}

type waiter struct {
	done chan struct{}
	n    int
}

// New returns a Service. Call Recover once before serving and run Run in
// the background.
func New(store fleet.Store, hub Sender, bus *events.Bus, log *slog.Logger, cfg Config) *Service {
	return &Service{
		store: store, hub: hub, bus: bus, log: log, cfg: cfg.withDefaults(),
		live:    make(map[string]*tracked),
		waiters: make(map[string]*waiter),
		held:    make(map[string]*heldResult),
	}
}

// Submit validates req, stores the command (pending for an online agent,
// queued for an offline one when req.QueueIfOffline) and delivers it if
// the agent is online. It returns ErrInvalidRequest, fleet.ErrUnknownAgent,
// fleet.ErrAgentRevoked, fleet.ErrAgentOffline or a wrapped store error; once it
// returns a command, that command will reach a terminal state. A failed
// delivery is not an error: the command stays live and is re-delivered
// when the agent reconnects, or times out.
func (s *Service) Submit(ctx context.Context, req Request) (fleet.Command, error) {
	if err := s.validate(&req); err != nil {
		return fleet.Command{}, err
	}
	agent, err := s.store.Agent(ctx, req.AgentID)
	switch {
	case errors.Is(err, fleet.ErrNotFound):
		return fleet.Command{}, fleet.ErrUnknownAgent
	case err != nil:
		return fleet.Command{}, fmt.Errorf("dispatch: submit: %w", err)
	case agent.Revoked:
		return fleet.Command{}, fleet.ErrAgentRevoked
	}
	online := s.hub.Online(req.AgentID)
	if !online && !req.QueueIfOffline {
		return fleet.Command{}, fleet.ErrAgentOffline
	}
	now := time.Now().UTC()
	cmd := fleet.Command{
		ID: secret.NewID("cmd_"), AgentID: req.AgentID, Command: req.Command, Args: req.Args,
		Timeout: req.Timeout, Status: fleet.StatusPending, RequestedBy: req.RequestedBy,
		BatchID: req.BatchID, CreatedAt: now,
	}
	if !online {
		cmd.Status = fleet.StatusQueued
		cmd.ExpiresAt = now.Add(req.TTL)
	}
	if err := s.store.CreateCommand(ctx, cmd); err != nil {
		return fleet.Command{}, fmt.Errorf("dispatch: submit: %w", err)
	}
	if cmd.Status == fleet.StatusQueued {
		s.bus.Publish(events.CommandQueued{AgentID: cmd.AgentID, CommandID: cmd.ID})
		// The agent may have connected after the Online check but before
		// the command was stored, missing it in its delivery on connect.
		if !s.hub.Online(cmd.AgentID) {
			return cmd, nil
		}
	} else {
		s.track(cmd.ID, cmd.AgentID, now.Add(cmd.Timeout+s.cfg.ResultGrace))
	}
	if err := s.deliver(ctx, &cmd); err != nil {
		s.log.Warn("command stored but not delivered; it stays live", "command_id", cmd.ID, "agent_id", cmd.AgentID, "err", err)
	}
	return cmd, nil
}

func (s *Service) validate(req *Request) error {
	bad := func(msg string) error { return fmt.Errorf("%w: %s", ErrInvalidRequest, msg) }
	switch {
	case req.AgentID == "":
		return bad("client id is required")
	case strings.TrimSpace(req.Command) == "":
		return bad("command must not be empty")
	case len(req.Args) > s.cfg.MaxArgs:
		return bad(fmt.Sprintf("at most %d arguments are allowed", s.cfg.MaxArgs))
	case req.Timeout < 0 || req.Timeout > s.cfg.MaxTimeout:
		return bad(fmt.Sprintf("timeout must be between 0 and %s", s.cfg.MaxTimeout))
	case req.TTL < 0 || req.TTL > s.cfg.MaxTTL:
		return bad(fmt.Sprintf("ttl must be between 0 and %s", s.cfg.MaxTTL))
	}
	size := len(req.Command)
	for _, a := range req.Args {
		size += len(a)
	}
	if size > s.cfg.MaxArgvBytes {
		return bad(fmt.Sprintf("command and arguments exceed %d bytes", s.cfg.MaxArgvBytes))
	}
	if hasNUL(req.Command) || slices.ContainsFunc(req.Args, hasNUL) {
		return bad("command and arguments must not contain NUL bytes")
	}
	if req.Timeout == 0 {
		req.Timeout = s.cfg.DefaultTimeout
	}
	if req.TTL == 0 {
		req.TTL = s.cfg.DefaultTTL
	}
	return nil
}

// deliver marks cmd dispatched and sends it to its agent. A send failure
// is only logged: the command stays live for re-delivery.
func (s *Service) deliver(ctx context.Context, cmd *fleet.Command) error {
	now := time.Now().UTC()
	if err := s.store.MarkDispatched(ctx, cmd.ID, now); err != nil {
		if errors.Is(err, fleet.ErrAlreadyFinal) {
			return nil
		}
		return fmt.Errorf("mark dispatched: %w", err)
	}
	cmd.Status, cmd.DispatchedAt = fleet.StatusDispatched, now
	cmd.Attempts++
	s.track(cmd.ID, cmd.AgentID, now.Add(cmd.Timeout+s.cfg.ResultGrace))
	s.bus.Publish(events.CommandDispatched{AgentID: cmd.AgentID, CommandID: cmd.ID, Attempt: cmd.Attempts})
	err := s.send(cmd.AgentID, agentproto.TypeCommandRequest, agentproto.CommandRequest{
		CommandID: cmd.ID, Command: cmd.Command, Args: cmd.Args, TimeoutMS: cmd.Timeout.Milliseconds(),
	})
	if err != nil {
		s.log.Debug("command not delivered; it will be re-delivered on reconnect", "command_id", cmd.ID, "agent_id", cmd.AgentID, "err", err)
	}
	return nil
}

func (s *Service) send(agentID, typ string, data any) error {
	raw, err := json.Marshal(data)
	if err != nil {
		return fmt.Errorf("encode %s: %w", typ, err)
	}
	return s.hub.Send(agentID, agentproto.Envelope{Type: typ, Data: raw})
}

func hasNUL(s string) bool { return strings.IndexByte(s, 0) >= 0 }

// DefaultConfig returns the defaults noted on each field of Config.
func DefaultConfig() Config { return Config{}.withDefaults() }
