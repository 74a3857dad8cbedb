// Package sessionstest is test support for the operator side of sessions:
// an in-memory [Streams] whose agents are test functions, so that
// internal/sessions and internal/api can be tested without a hub.
// Streams are synchronous pipes: a write blocks until the other side
// reads it, the tightest flow control there is.
package sessionstest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/home-console/client-manager/internal/sessions"
	"github.com/home-console/client-manager/pkg/agentproto"
)

// CloseError is a stream ended by an abort (either side's stream_close
// with a code, or the connection's end).
type CloseError struct{ Close agentproto.StreamClose }

func (e *CloseError) Error() string { return "stream aborted: " + e.Close.Code + " " + e.Close.Message }

// Agent is a fake agent: its features, whether it is online, and what it
// does with each stream (Handle runs in its own goroutine and must call
// Accept or Refuse first).
type Agent struct {
	Features []string
	Offline  bool
	Handle   func(s *AgentStream)
}

// Streams implements sessions.Streams over fake agents. Safe for
// concurrent use.
type Streams struct {
	mu     sync.Mutex
	agents map[string]*Agent
	opened []agentproto.StreamOpen
}

// Set registers (or replaces) agent id.
func (s *Streams) Set(id string, a *Agent) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.agents == nil {
		s.agents = map[string]*Agent{}
	}
	s.agents[id] = a
}

// Opened returns the stream_open requests sent so far.
func (s *Streams) Opened() []agentproto.StreamOpen {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]agentproto.StreamOpen(nil), s.opened...)
}

func (s *Streams) agent(id string) (*Agent, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.agents[id]
	return a, ok && !a.Offline
}

// Features implements sessions.Streams.
func (s *Streams) Features(id string) ([]string, bool) {
	a, ok := s.agent(id)
	if !ok {
		return nil, false
	}
	return append([]string{agentproto.FeatureStreams}, a.Features...), true
}

// CloseOf implements sessions.Streams.
func (s *Streams) CloseOf(err error) (agentproto.StreamClose, bool) {
	var ce *CloseError
	if errors.As(err, &ce) {
		return ce.Close, true
	}
	return agentproto.StreamClose{}, false
}

// OpenStream implements sessions.Streams: it runs the agent's Handle and
// waits for its Accept or Refuse.
func (s *Streams) OpenStream(ctx context.Context, id string, open agentproto.StreamOpen) (sessions.Stream, agentproto.StreamOpened, error) {
	a, ok := s.agent(id)
	if !ok {
		return nil, agentproto.StreamOpened{}, sessions.ErrOffline
	}
	s.mu.Lock()
	open.StreamID = uint32(len(s.opened) + 1)
	s.opened = append(s.opened, open)
	s.mu.Unlock()
	srv, ag := pair(open)
	go a.Handle(ag)
	select {
	case ans := <-ag.answer:
		if ans.refused != nil {
			return nil, agentproto.StreamOpened{}, &CloseError{Close: *ans.refused}
		}
		return srv, ans.opened, nil
	case <-ctx.Done():
		srv.abort(agentproto.StreamClose{Code: agentproto.StreamErrorCancelled})
		return nil, agentproto.StreamOpened{}, ctx.Err()
	}
}

// answer is an agent's reply to stream_open.
type answer struct {
	opened  agentproto.StreamOpened
	refused *agentproto.StreamClose
}

// pair returns the two ends of a new stream.
func pair(open agentproto.StreamOpen) (*serverStream, *AgentStream) {
	upR, upW := io.Pipe()     // agent → server
	downR, downW := io.Pipe() // server → agent
	ag := &AgentStream{Open: open, in: downR, out: upW, answer: make(chan answer, 1), Controls: make(chan any, 64)}
	srv := &serverStream{in: upR, out: downW, agent: ag}
	ag.server = srv
	return srv, ag
}

// serverStream is the server's end.
type serverStream struct {
	in    *io.PipeReader
	out   *io.PipeWriter
	agent *AgentStream

	mu        sync.Mutex
	peer      *agentproto.StreamClose
	sentClose *agentproto.StreamClose
}

func (s *serverStream) Read(p []byte) (int, error) { return s.in.Read(p) }

func (s *serverStream) WriteContext(ctx context.Context, p []byte) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	return s.out.Write(p)
}

func (s *serverStream) CloseWrite(c agentproto.StreamClose) error {
	s.mu.Lock()
	if s.sentClose != nil {
		s.mu.Unlock()
		return errors.New("write side closed")
	}
	s.sentClose = &c
	s.mu.Unlock()
	return s.out.Close()
}

func (s *serverStream) abort(c agentproto.StreamClose) {
	s.mu.Lock()
	if s.sentClose == nil {
		s.sentClose = &c
	}
	s.mu.Unlock()
	err := &CloseError{Close: c}
	_ = s.agent.out.CloseWithError(err) // the server's reads end with err, the agent's writes fail
	_ = s.out.CloseWithError(err)       // the agent's reads end with err
}

func (s *serverStream) Abort(code, message string) error {
	s.abort(agentproto.StreamClose{Code: code, Message: message})
	return nil
}

func (s *serverStream) Control(msg any) error {
	select {
	case s.agent.Controls <- msg:
		return nil
	default:
		return fmt.Errorf("controls full")
	}
}

func (s *serverStream) PeerClose() (agentproto.StreamClose, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.peer == nil {
		return agentproto.StreamClose{}, false
	}
	return *s.peer, true
}

// AgentStream is the agent's end of a stream.
type AgentStream struct {
	Open agentproto.StreamOpen
	// Controls receives the server's terminal_resize and
	// terminal_signal values.
	Controls chan any
	in       *io.PipeReader
	out      *io.PipeWriter
	answer   chan answer
	server   *serverStream
}

// Accept answers stream_opened.
func (a *AgentStream) Accept(o agentproto.StreamOpened) { a.answer <- answer{opened: o} }

// Refuse answers stream_close with a code.
func (a *AgentStream) Refuse(c agentproto.StreamClose) { a.answer <- answer{refused: &c} }

// Read reads what the server sent: io.EOF after its CloseWrite, a
// *CloseError after its abort.
func (a *AgentStream) Read(p []byte) (int, error) { return a.in.Read(p) }

// Write sends to the server; it blocks until the server reads.
func (a *AgentStream) Write(p []byte) (int, error) { return a.out.Write(p) }

// CloseWrite ends the agent's side cleanly with c.
func (a *AgentStream) CloseWrite(c agentproto.StreamClose) {
	a.server.mu.Lock()
	a.server.peer = &c
	a.server.mu.Unlock()
	_ = a.out.Close()
}

// Abort ends the stream with c (a Code set), as the agent's stream_close
// or the connection's end (agentproto.StreamErrorDisconnected).
func (a *AgentStream) Abort(c agentproto.StreamClose) {
	a.server.mu.Lock()
	a.server.peer = &c
	a.server.mu.Unlock()
	err := &CloseError{Close: c}
	_ = a.out.CloseWithError(err)
	_ = a.in.CloseWithError(err)
}

// ServerClose returns the server's stream_close, once sent.
func (a *AgentStream) ServerClose() (agentproto.StreamClose, bool) {
	a.server.mu.Lock()
	defer a.server.mu.Unlock()
	if a.server.sentClose == nil {
		return agentproto.StreamClose{}, false
	}
	return *a.server.sentClose, true
}
