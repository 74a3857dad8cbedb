// Package sessions is the operator's side of interactive sessions on
// agents: it bridges an operator's terminal WebSocket (pkg/terminalproto)
// to an agent's terminal stream, lets others watch it read-only, records
// it as an asciicast v2 file, issues single-use tickets for browsers, and
// streams file uploads and downloads between HTTP bodies and agent
// streams without holding a file in memory.
//
// It reaches agents through [Streams], which the assembly implements over
// the hub; it never imports another adapter.
package sessions

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/home-console/client-manager/internal/fleet"
	"github.com/home-console/client-manager/pkg/agentproto"
)

// Errors Streams.OpenStream returns besides a refusal (see CloseOf).
var (
	// ErrOffline: the agent is not connected.
	ErrOffline = errors.New("agent offline")
	// ErrStreamsUnsupported: the agent's connection did not negotiate
	// streams (an older agent).
	ErrStreamsUnsupported = errors.New("agent does not support streams")
	// ErrTooManyStreams: the agent's connection has as many streams open
	// as it may.
	ErrTooManyStreams = errors.New("too many streams on the agent's connection")
)

// Stream is one open agent stream (pkg/agentstream's Stream as the
// assembly hands it over). Reads end with io.EOF after the agent's clean
// close, or with an error CloseOf understands after an abort.
type Stream interface {
	Read(p []byte) (int, error)
	// WriteContext blocks for the agent's credit.
	WriteContext(ctx context.Context, p []byte) (int, error)
	// CloseWrite sends this side's clean stream_close.
	CloseWrite(c agentproto.StreamClose) error
	// Abort sends stream_close with code; idempotent.
	Abort(code, message string) error
	// Control sends a terminal_resize or terminal_signal for the stream
	// (the stream id is filled in).
	Control(msg any) error
	// PeerClose returns the agent's stream_close once received.
	PeerClose() (agentproto.StreamClose, bool)
}

// Streams opens streams to agents. Its methods are safe for concurrent use.
type Streams interface {
	// OpenStream opens a stream and waits for the agent's answer. Errors:
	// ErrOffline, ErrStreamsUnsupported, ErrTooManyStreams, a refusal
	// (CloseOf reports the agent's stream_close), or ctx's error.
	OpenStream(ctx context.Context, agentID string, open agentproto.StreamOpen) (Stream, agentproto.StreamOpened, error)
	// Features returns the features the agent listed in its hello, and
	// whether it is online.
	Features(agentID string) ([]string, bool)
	// CloseOf reports the stream_close behind an error of a stream, if
	// it is one (the agent's refusal or abort, a local abort, the
	// connection's end with agentproto.StreamErrorDisconnected).
	CloseOf(err error) (agentproto.StreamClose, bool)
}

// Defaults of Config.
const (
	DefaultRecordingMaxBytes       = 64 << 20
	DefaultRecordingsMaxTotalBytes = 1 << 30
	DefaultRecordingRetention      = 720 * time.Hour
	DefaultFilesMaxBytes           = 1 << 30
	DefaultFilesMaxPerAgent        = 4
	DefaultTicketTTL               = 30 * time.Second
	DefaultWatcherQueue            = 256
	DefaultWriteTimeout            = 10 * time.Second
)

// Config tunes a Manager; zero fields take the defaults above.
type Config struct {
	// Dir holds the recordings (<session id>.cast) and their metadata
	// (<session id>.json); created if missing.
	Dir string
	// RecordInput records keystrokes too ("i" events); off by default,
	// since they may hold passwords.
	RecordInput bool
	// RecordingMaxBytes caps one recording; beyond, recording stops with
	// a final marker event while the session goes on.
	RecordingMaxBytes int64
	// RecordingsMaxTotalBytes caps all recordings; beyond, the oldest
	// ended ones are deleted first.
	RecordingsMaxTotalBytes int64
	// RecordingRetention is how long an ended session's recording is kept.
	RecordingRetention time.Duration
	// FilesMaxBytes is the largest upload (413 before the agent is asked).
	FilesMaxBytes int64
	// FilesMaxPerAgent bounds the transfers running at once per agent.
	FilesMaxPerAgent int
	// TicketTTL is how long a terminal ticket is valid.
	TicketTTL time.Duration
	// WatcherQueue bounds the output frames waiting for one watcher;
	// beyond, the watcher is closed with 4012.
	WatcherQueue int
	// WriteTimeout bounds one write to an operator's WebSocket.
	WriteTimeout time.Duration
	Log          *slog.Logger
}

func (c Config) withDefaults() Config {
	c.RecordingMaxBytes = cmp.Or(c.RecordingMaxBytes, DefaultRecordingMaxBytes)
	c.RecordingsMaxTotalBytes = cmp.Or(c.RecordingsMaxTotalBytes, DefaultRecordingsMaxTotalBytes)
	c.RecordingRetention = cmp.Or(c.RecordingRetention, DefaultRecordingRetention)
	c.FilesMaxBytes = cmp.Or(c.FilesMaxBytes, DefaultFilesMaxBytes)
	c.FilesMaxPerAgent = cmp.Or(c.FilesMaxPerAgent, DefaultFilesMaxPerAgent)
	c.TicketTTL = cmp.Or(c.TicketTTL, DefaultTicketTTL)
	c.WatcherQueue = cmp.Or(c.WatcherQueue, DefaultWatcherQueue)
	c.WriteTimeout = cmp.Or(c.WriteTimeout, DefaultWriteTimeout)
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return c
}

// Manager runs the sessions and transfers. Its methods are safe for
// concurrent use.
type Manager struct {
	streams Streams
	cfg     Config
	tickets tickets
	store   *recordings

	mu        sync.Mutex
	live      map[string]*terminal // active sessions by id
	transfers map[string]int       // running transfers per agent
	closed    bool                 // Shutdown began
	running   sync.WaitGroup       // ServeTerminal and ServeWatch calls
}

// Shutdown ends every running session (the agent's stream aborted with
// code shutdown, operators and watchers closed with 1001) and refuses new
// ones with fleet.CodeUnavailable; it waits for them to finish until ctx
// ends. Safe to call more than once.
func (m *Manager) Shutdown(ctx context.Context) error {
	m.mu.Lock()
	m.closed = true
	live := make([]*terminal, 0, len(m.live))
	for _, t := range m.live {
		live = append(live, t)
	}
	m.mu.Unlock()
	for _, t := range live {
		_ = t.stream.Abort(agentproto.StreamErrorShutdown, "client manager stopping")
	}
	done := make(chan struct{})
	go func() {
		m.running.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// enter counts a serving call in; it fails once Shutdown began.
func (m *Manager) enter() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return fleet.Errorf(fleet.CodeUnavailable, "the client manager is stopping")
	}
	m.running.Add(1)
	return nil
}

// New returns a Manager over streams, with its recordings in cfg.Dir:
// sessions a previous run left active are marked ended, and recordings
// past the retention or the total cap are deleted.
func New(streams Streams, cfg Config) (*Manager, error) {
	cfg = cfg.withDefaults()
	if cfg.Dir == "" {
		return nil, errors.New("sessions: Config.Dir is required")
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("sessions: recordings dir: %w", err)
	}
	m := &Manager{streams: streams, cfg: cfg, live: map[string]*terminal{}, transfers: map[string]int{}}
	m.tickets.ttl = cfg.TicketTTL
	m.store = &recordings{dir: cfg.Dir, log: cfg.Log}
	if err := m.store.recover(time.Now()); err != nil {
		return nil, err
	}
	m.Prune(time.Now())
	return m, nil
}

// Prune deletes the recordings of ended sessions past the retention, then
// the oldest ended ones while all recordings exceed the total cap.
func (m *Manager) Prune(now time.Time) {
	m.store.prune(now, m.cfg.RecordingRetention, m.cfg.RecordingsMaxTotalBytes)
}

// Run prunes every interval until ctx ends.
func (m *Manager) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			m.Prune(now)
		}
	}
}

// agentError turns an OpenStream error or an agent's refusal into the
// coded error the API shows: what names the request for messages, and
// notAllowed is the code of a kind the agent does not allow.
func (m *Manager) agentError(err error, what string, notAllowed fleet.ErrorCode) error {
	switch {
	case errors.Is(err, ErrOffline):
		return fleet.Errorf(fleet.CodeAgentOffline, "the agent is not connected")
	case errors.Is(err, ErrStreamsUnsupported):
		return fleet.Errorf(notAllowed, "%s: the agent's version does not support streams", what)
	case errors.Is(err, ErrTooManyStreams):
		return fleet.Errorf(fleet.CodeTransferLimit, "the agent's connection has too many streams open; retry later")
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	}
	c, ok := m.streams.CloseOf(err)
	if !ok {
		return fmt.Errorf("%s: %w", what, err)
	}
	return closeError(c, what, notAllowed)
}

// closeError is the coded error of an agent's stream_close with a code.
func closeError(c agentproto.StreamClose, what string, notAllowed fleet.ErrorCode) error {
	msg := what + ": " + cmp.Or(c.Message, c.Code)
	switch c.Code {
	case agentproto.StreamErrorDisconnected:
		return fleet.Errorf(fleet.CodeAgentDisconnected, "%s: the agent disconnected", what)
	case agentproto.StreamErrorShutdown:
		return fleet.Errorf(fleet.CodeUnavailable, "%s: the client manager or the agent is stopping", what)
	case agentproto.StreamErrorOffsetMismatch:
		if c.Offset != nil {
			return &fleet.OffsetMismatchError{Offset: *c.Offset}
		}
	case string(fleet.CodeDigestMismatch):
		return &fleet.DigestMismatchError{Actual: c.SHA256}
	case "terminal_disabled", agentproto.StreamErrorUnsupported, "terminal_unsupported":
		return fleet.Errorf(notAllowed, "%s", msg)
	}
	if knownAgentCodes[fleet.ErrorCode(c.Code)] {
		return fleet.Errorf(fleet.ErrorCode(c.Code), "%s", msg)
	}
	return fleet.Errorf(fleet.CodeAgentError, "%s (agent error %s)", msg, c.Code)
}

// knownAgentCodes are the agent's codes the API shows as they are.
var knownAgentCodes = map[fleet.ErrorCode]bool{
	fleet.CodePathInvalid: true, fleet.CodePathOutsideRoots: true, fleet.CodeFileNotFound: true,
	fleet.CodePathIsDirectory: true, fleet.CodePathNotDirectory: true, fleet.CodeFileNotRegular: true,
	fleet.CodeFileHardLink: true, fleet.CodeFilePermission: true, fleet.CodeFileBusy: true,
	fleet.CodeFileChanged: true, fleet.CodeSizeMismatch: true, fleet.CodeTransferBadRequest: true,
	fleet.CodeFileIOError: true, fleet.CodeTransferTooLarge: true, fleet.CodeTransferLimit: true,
	fleet.CodeTerminalLimit: true, fleet.CodeDigestMismatch: true,
}

// hasFeature reports whether the online agent lists feature; an offline
// agent is fleet.CodeAgentOffline.
func (m *Manager) hasFeature(agentID, feature string) (bool, error) {
	features, online := m.streams.Features(agentID)
	if !online {
		return false, fleet.Errorf(fleet.CodeAgentOffline, "the agent is not connected")
	}
	for _, f := range features {
		if f == feature {
			return true, nil
		}
	}
	return false, nil
}

// discard drains r, so a stream's tail is consumed (credit returned).
func discard(r io.Reader) { _, _ = io.Copy(io.Discard, r) }
