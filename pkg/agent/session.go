package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/home-console/client-manager/pkg/agentproto"
	"github.com/home-console/client-manager/pkg/agentstream"
)

// Connection limits and timeouts of the agent side.
const (
	// handshakeTimeout bounds dial + upgrade + hello + welcome.
	handshakeTimeout = 15 * time.Second
	// writeTimeout bounds writing one frame.
	writeTimeout = 10 * time.Second
	// outQueueSize is the capacity of a connection's outbound queue.
	outQueueSize = 64
	// defaultMaxMessage is the frame size limit used until (and unless)
	// the welcome gives one; it is also the agent's read limit.
	defaultMaxMessage = 1 << 20
	// defaultHeartbeat is used when the welcome gives no interval.
	defaultHeartbeat = 15 * time.Second
)

var (
	errAgentStopped     = errors.New("agent stopped")
	errServerSilent     = errors.New("nothing received from the server within its liveness timeout")
	errCommandCancelled = errors.New("cancelled by the server")
	errCommandTimedOut  = errors.New("timed out")
)

// session is one established connection. Its reader runs in the goroutine
// that called serve; its writer in one goroutine of its own, the only one
// that writes frames.
type session struct {
	a          *Agent
	conn       *websocket.Conn
	welcome    agentproto.Welcome
	heartbeat  time.Duration
	liveness   time.Duration
	maxMessage int64
	maxOutput  int64

	out      chan []byte      // encoded envelopes for the writer
	streams  *streamQueue     // stream frames for the writer, behind out
	mux      *agentstream.Mux // the streams, when the welcome lists them; else nil
	beat     chan struct{}    // heartbeat signals from a HeartbeatGroup
	done     chan struct{}    // closed by end when the reader or the writer stops
	endOnce  sync.Once
	lastRecv atomic.Int64 // unix nanos of the last frame received
	nextID   atomic.Uint64
}

// end marks the session over: queued and blocked sends give up.
func (s *session) end() { s.endOnce.Do(func() { close(s.done) }) }

// handshake dials the server, sends hello and waits for welcome.
func (a *Agent) handshake(ctx context.Context) (*session, error) {
	ctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
	defer cancel()
	conn, resp, err := websocket.Dial(ctx, a.wsURL, &websocket.DialOptions{
		HTTPClient:   a.httpClient,
		HTTPHeader:   http.Header{"Authorization": {"Bearer " + a.cfg.Credential}},
		Subprotocols: []string{agentproto.Subprotocol},
	})
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			return nil, fmt.Errorf("connect: %w", serverErrorFrom(resp))
		}
		return nil, fmt.Errorf("connect: %w", err)
	}
	if p := conn.Subprotocol(); p != agentproto.Subprotocol {
		conn.Close(websocket.StatusProtocolError, "subprotocol "+agentproto.Subprotocol+" required")
		return nil, fmt.Errorf("connect: server did not accept subprotocol %s (got %q)", agentproto.Subprotocol, p)
	}
	conn.SetReadLimit(defaultMaxMessage)
	s := &session{a: a, conn: conn, maxMessage: defaultMaxMessage, out: make(chan []byte, outQueueSize),
		streams: newStreamQueue(), beat: make(chan struct{}, 1), done: make(chan struct{})}
	w, err := s.hello(ctx)
	if err != nil {
		conn.CloseNow()
		return nil, err
	}
	s.setWelcome(w)
	s.startStreams(w)
	return s, nil
}

// hello sends the hello message and reads the answer, which must be welcome.
func (s *session) hello(ctx context.Context) (agentproto.Welcome, error) {
	h := s.a.facts
	h.Running = s.a.runningIDs()
	b, err := s.encode(agentproto.TypeHello, h)
	if err == nil {
		err = s.conn.Write(ctx, websocket.MessageText, b)
	}
	if err != nil {
		return agentproto.Welcome{}, fmt.Errorf("send hello: %w", err)
	}
	_, msg, err := s.conn.Read(ctx)
	if err != nil {
		return agentproto.Welcome{}, fmt.Errorf("wait for welcome: %w", readError(err))
	}
	var env agentproto.Envelope
	var w agentproto.Welcome
	if err := json.Unmarshal(msg, &env); err != nil {
		return w, fmt.Errorf("wait for welcome: invalid message: %w", err)
	}
	switch env.Type {
	case agentproto.TypeWelcome:
		if err := json.Unmarshal(env.Data, &w); err != nil {
			return w, fmt.Errorf("invalid welcome: %w", err)
		}
		return w, nil
	case agentproto.TypeError:
		var e agentproto.Error
		_ = json.Unmarshal(env.Data, &e)
		return w, fmt.Errorf("server refused hello: %s: %s", e.Code, e.Message)
	}
	return w, fmt.Errorf("expected welcome, got %q", env.Type)
}

// setWelcome applies the server's parameters, with defaults for those it
// left out.
func (s *session) setWelcome(w agentproto.Welcome) {
	s.welcome = w
	s.heartbeat = time.Duration(w.HeartbeatIntervalMS) * time.Millisecond
	if s.heartbeat <= 0 {
		s.heartbeat = defaultHeartbeat
	}
	if s.a.cfg.HeartbeatInterval > 0 {
		s.heartbeat = s.a.cfg.HeartbeatInterval
	}
	s.liveness = time.Duration(w.LivenessTimeoutMS) * time.Millisecond
	if s.liveness <= 0 {
		s.liveness = 3 * s.heartbeat
	}
	if w.MaxMessageBytes > 0 {
		s.maxMessage = w.MaxMessageBytes
		s.conn.SetReadLimit(max(w.MaxMessageBytes, defaultMaxMessage))
	}
	s.maxOutput = s.a.cfg.MaxOutputBytes
	if w.MaxOutputBytes > 0 {
		s.maxOutput = w.MaxOutputBytes
	}
	s.lastRecv.Store(time.Now().UnixNano())
}

// serve runs the session until the connection ends or ctx is done (then it
// closes the connection with status 1000). It returns why it ended.
func (s *session) serve(ctx context.Context) error {
	readCtx, stopReading := context.WithCancel(context.WithoutCancel(ctx))
	defer stopReading()
	writerDone := make(chan struct{})
	// Results finishing from now on are queued by their goroutines; those
	// finished before are re-sent first.
	s.a.current.Store(s)
	unacked := s.a.unackedResults(time.Now())
	go func() {
		defer close(writerDone)
		defer stopReading()
		defer s.end()
		s.writeLoop(ctx, unacked)
	}()
	err := s.readLoop(readCtx)
	s.a.current.CompareAndSwap(s, nil)
	s.end()
	s.stopStreams(err)
	<-writerDone
	s.conn.CloseNow()
	return err
}

// readLoop reads and dispatches frames until the connection fails, or
// closes it with agentproto.ClosePolicy when the server breaks the stream
// rules.
func (s *session) readLoop(ctx context.Context) error {
	for {
		typ, msg, err := s.conn.Read(ctx)
		if err != nil {
			return readError(err)
		}
		s.lastRecv.Store(time.Now().UnixNano())
		if typ == websocket.MessageText {
			err = s.dispatch(msg)
		} else {
			err = s.handleBinary(msg)
		}
		if err != nil {
			s.conn.Close(agentproto.ClosePolicy, closeReason(err))
			return fmt.Errorf("protocol violation by the server: %w", err)
		}
	}
}

// readError turns a read failure into the session's end cause.
func readError(err error) error {
	var ce websocket.CloseError
	switch {
	case !errors.As(err, &ce):
		return fmt.Errorf("connection lost: %w", err)
	case int(ce.Code) == agentproto.CloseRevoked:
		return fmt.Errorf("%w: %w", ErrRevoked, closedError{ce})
	}
	return closedError{ce}
}

// closedError is a close frame received from the server.
type closedError struct{ ce websocket.CloseError }

func (e closedError) Error() string {
	return fmt.Sprintf("server closed the connection with %d: %s", int(e.ce.Code), e.ce.Reason)
}

func (e closedError) Unwrap() error { return e.ce }

// closeStatus returns the WebSocket close code in err's chain, or -1.
func closeStatus(err error) int {
	return int(websocket.CloseStatus(err))
}

// encode builds an envelope with a fresh message id.
func (s *session) encode(typ string, data any) ([]byte, error) {
	raw, err := json.Marshal(data)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", typ, err)
	}
	id := "a" + strconv.FormatUint(s.nextID.Add(1), 10)
	return json.Marshal(agentproto.Envelope{Type: typ, ID: id, Data: raw})
}

// send queues a message, waiting for room in the queue. It reports false
// if the session ended first.
func (s *session) send(typ string, data any) bool {
	b, err := s.encode(typ, data)
	if err != nil {
		s.a.log.Error("dropping message", "err", err)
		return false
	}
	return s.enqueue(b)
}

func (s *session) enqueue(b []byte) bool {
	select {
	case s.out <- b:
		return true
	case <-s.done:
		return false
	}
}

// trySend queues a message if there is room; it never blocks.
func (s *session) trySend(typ string, data any) bool {
	b, err := s.encode(typ, data)
	if err != nil {
		return false
	}
	select {
	case s.out <- b:
		return true
	default:
		return false
	}
}

// sendResult queues a command result, shrunk to fit the frame size limit.
func (s *session) sendResult(res agentproto.CommandResult) bool {
	b, err := s.encodeResult(res)
	if err != nil {
		s.a.log.Error("dropping result", "command_id", res.CommandID, "err", err)
		return false
	}
	return s.enqueue(b)
}

func (s *session) sendError(code, message, ref string) {
	s.a.log.Warn("bad message from the server", "code", code, "message", message, "ref", ref)
	s.trySend(agentproto.TypeError, agentproto.Error{Code: code, Message: message, Ref: ref})
}
