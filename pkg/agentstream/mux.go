// Package agentstream implements the streams of pkg/agentproto (feature
// streams.v1) over one agent connection: stream ids, binary framing, credit
// flow control and the closing rules. It is transport-agnostic: the server
// (internal/hub) and the agent SDK (pkg/agent) each give a [Mux] a
// [Transport] that queues frames on their WebSocket, and feed it what they
// read.
//
// Flow control: a side never has more than the stream's window of payload
// sent and not yet credited; a Write blocks for credit. The receiver
// buffers at most the window and returns credit as Read consumes bytes, in
// batches of at least a quarter of the window.
package agentstream

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"github.com/home-console/client-manager/pkg/agentproto"
)

// Transport is how a Mux sends frames. Both methods queue and return at
// once (never block on the network); they are called concurrently, and
// also while the Mux holds its lock, so they must not call back into the
// Mux.
type Transport interface {
	// SendControl queues a JSON text message (agentproto.Envelope with typ
	// and data) AHEAD of every queued data frame — except stream_close
	// (agentproto.TypeStreamClose), which must be queued BEHIND the data
	// frames queued before it: a stream's close follows its last data
	// frame on the wire.
	SendControl(typ string, data any) error
	// SendData queues one binary frame (4-byte big-endian stream id +
	// payload; the Mux builds it, and the transport owns it). The Mux
	// calls it only within credit, so what is queued is bounded by the
	// windows.
	SendData(frame []byte) error
}

// Config tunes a Mux. Zero fields take the defaults noted on each.
type Config struct {
	Window     int64 // per stream per direction; 0 = agentproto.DefaultStreamWindowBytes
	Chunk      int   // max payload per frame; 0 = agentproto.DefaultStreamChunkBytes
	MaxStreams int   // streams open at once; 0 = 16
}

func (c Config) withDefaults() Config {
	if c.Window <= 0 {
		c.Window = agentproto.DefaultStreamWindowBytes
	}
	if c.Chunk <= 0 {
		c.Chunk = agentproto.DefaultStreamChunkBytes
	}
	if c.MaxStreams <= 0 {
		c.MaxStreams = 16
	}
	return c
}

// Errors of a Mux and its streams, checked with errors.Is.
var (
	// ErrClosed: the Mux was closed (its connection ended).
	ErrClosed = errors.New("agentstream: connection closed")
	// ErrTooManyStreams: MaxStreams streams are open already.
	ErrTooManyStreams = errors.New("agentstream: too many streams open")
	// ErrWriteClosed: this side already sent its stream_close.
	ErrWriteClosed = errors.New("agentstream: write side closed")
)

// CloseError is a stream ended by an abort: the peer's stream_close with a
// Code (Remote true), this side's Abort, or the Mux's Close.
type CloseError struct {
	Close  agentproto.StreamClose
	Remote bool
}

func (e *CloseError) Error() string {
	who := "locally"
	if e.Remote {
		who = "by the peer"
	}
	msg := fmt.Sprintf("stream %d aborted %s: %s", e.Close.StreamID, who, e.Close.Code)
	if e.Close.Message != "" {
		msg += ": " + e.Close.Message
	}
	return msg
}

// Mux is the set of streams of one connection. Its methods are safe for
// concurrent use, except that HandleData and Handle must be called by one
// goroutine (the connection's reader), in the order the frames arrived.
type Mux struct {
	t   Transport
	cfg Config

	mu      sync.Mutex
	streams map[uint32]*Stream // created at first use
	lastID  uint32             // highest id opened (server) or accepted (agent)
	closed  bool
	done    chan struct{} // closed by Close

	opens   chan agentproto.StreamOpen // Pipe's agent side only
	onClose func()                     // Pipe only
}

// New returns a Mux sending through t. It starts no goroutine.
func New(t Transport, cfg Config) *Mux {
	return &Mux{t: t, cfg: cfg.withDefaults(), done: make(chan struct{})}
}

// Len returns the number of streams open: not yet closed by both sides
// (an aborted stream counts until the peer's stream_close arrives).
func (m *Mux) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.streams)
}

// Opens returns, for the agent Mux of a Pipe, the stream_open messages it
// received, in order, for the caller to Accept; nil for any other Mux
// (whose connection's reader calls Accept itself).
func (m *Mux) Opens() <-chan agentproto.StreamOpen { return m.opens }

// windowFor is a stream's window: the Mux's, or the open's when smaller.
func (m *Mux) windowFor(open agentproto.StreamOpen) int64 {
	if open.WindowBytes > 0 && open.WindowBytes < m.cfg.Window {
		return open.WindowBytes
	}
	return m.cfg.Window
}

// register adds a stream for open under m.mu.
func (m *Mux) register(open agentproto.StreamOpen, awaiting bool) *Stream {
	s := newStream(m, open, m.windowFor(open), awaiting)
	if m.streams == nil {
		m.streams = make(map[uint32]*Stream)
	}
	m.streams[open.StreamID] = s
	return s
}

// Open (server side) assigns open.StreamID (1, 2, 3…), sends stream_open,
// and waits for stream_opened (returned) or the agent's stream_close with
// a Code (returned as *CloseError). ctx ending first aborts the stream
// (stream_close{code:cancelled}) and returns ctx.Err(). ErrTooManyStreams
// past MaxStreams; ErrClosed after Close.
func (m *Mux) Open(ctx context.Context, open agentproto.StreamOpen) (*Stream, agentproto.StreamOpened, error) {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil, agentproto.StreamOpened{}, ErrClosed
	}
	if len(m.streams) >= m.cfg.MaxStreams {
		m.mu.Unlock()
		return nil, agentproto.StreamOpened{}, ErrTooManyStreams
	}
	m.lastID++
	open.StreamID = m.lastID
	s := m.register(open, true)
	err := m.t.SendControl(agentproto.TypeStreamOpen, open)
	if err != nil {
		delete(m.streams, open.StreamID)
	}
	m.mu.Unlock()
	if err != nil {
		return nil, agentproto.StreamOpened{}, fmt.Errorf("agentstream: send stream_open: %w", err)
	}
	select {
	case <-s.openedCh:
		return s, s.opened, nil
	case <-s.done:
		return nil, agentproto.StreamOpened{}, s.endErr()
	case <-ctx.Done():
		_ = s.Abort(agentproto.StreamErrorCancelled, "the stream's opener went away")
		return nil, agentproto.StreamOpened{}, ctx.Err()
	}
}

// Accept (agent side) registers the stream of an inbound stream_open. The
// caller then calls st.Accept(opened) or st.Abort(code, msg). A zero,
// reused (ids must increase) or over-limit id returns an error and the
// Mux has already answered stream_close{code: protocol_error} (over the
// limit: code stream_limit, error ErrTooManyStreams). After Close:
// ErrClosed, nothing sent.
func (m *Mux) Accept(open agentproto.StreamOpen) (*Stream, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	var code string
	var err error
	switch {
	case open.StreamID == 0:
		code, err = agentproto.StreamErrorProtocol, errors.New("agentstream: stream_open with stream id 0")
	case open.StreamID <= m.lastID:
		code, err = agentproto.StreamErrorProtocol, fmt.Errorf("agentstream: stream_open reuses stream id %d", open.StreamID)
	case len(m.streams) >= m.cfg.MaxStreams:
		m.lastID = open.StreamID
		code, err = agentproto.StreamErrorLimit, ErrTooManyStreams
	}
	if err != nil {
		refusal := agentproto.StreamClose{StreamID: open.StreamID, Code: code, Message: err.Error()}
		if serr := m.t.SendControl(agentproto.TypeStreamClose, refusal); serr != nil {
			return nil, errors.Join(err, serr)
		}
		return nil, err
	}
	m.lastID = open.StreamID
	return m.register(open, false), nil
}

// Close ends every stream (reads and writes fail with a *CloseError of code
// agentproto.StreamErrorDisconnected, or the code given) without sending
// anything; later Open/Accept fail with ErrClosed. Idempotent: only the
// first call's code counts.
func (m *Mux) Close(code, message string) {
	if code == "" {
		code = agentproto.StreamErrorDisconnected
	}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return
	}
	m.closed = true
	close(m.done)
	for id, s := range m.streams {
		s.abortLocked(agentproto.StreamClose{StreamID: id, Code: code, Message: message})
		s.finishLocked()
	}
	m.streams = nil
	hook := m.onClose
	m.mu.Unlock()
	if hook != nil {
		hook()
	}
}

// Abort aborts every open stream with code and message: each gets a
// stream_close (unless this side sent its close already) and ends with a
// *CloseError (Remote false). New streams can still be opened; use it
// before closing the connection, e.g. with agentproto.StreamErrorShutdown.
func (m *Mux) Abort(code, message string) {
	m.mu.Lock()
	streams := make([]*Stream, 0, len(m.streams))
	for _, s := range m.streams {
		streams = append(streams, s)
	}
	m.mu.Unlock()
	for _, s := range streams {
		_ = s.Abort(code, message)
	}
}

// lookup returns the stream of id for an inbound message under m.mu. A
// nil stream with a nil error is a message for a stream over already
// (ignored); an id never opened is a protocol error.
func (m *Mux) lookup(id uint32, typ string) (*Stream, error) {
	if s := m.streams[id]; s != nil {
		return s, nil
	}
	if id != 0 && id <= m.lastID {
		return nil, nil
	}
	return nil, fmt.Errorf("%s for unknown stream %d", typ, id)
}

// HandleData takes one binary frame; it does not keep frame. An error is a
// protocol violation (unknown/closed stream id, beyond credit, over Chunk,
// short header): the caller closes the connection (agentproto.ClosePolicy,
// err.Error() as reason). Data for a stream that this side already
// aborted is silently dropped (it was in flight), but still counted
// against credit. Calls after Close are ignored.
func (m *Mux) HandleData(frame []byte) error {
	if len(frame) < agentproto.StreamHeaderBytes {
		return fmt.Errorf("binary frame of %d bytes is shorter than its stream id", len(frame))
	}
	id := binary.BigEndian.Uint32(frame)
	payload := frame[agentproto.StreamHeaderBytes:]
	if len(payload) > m.cfg.Chunk {
		return fmt.Errorf("binary frame for stream %d carries %d bytes, over the chunk size %d", id, len(payload), m.cfg.Chunk)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil
	}
	s := m.streams[id]
	if s == nil {
		return fmt.Errorf("binary frame for unknown or closed stream %d", id)
	}
	return s.receiveLocked(payload)
}

// Handle takes one decoded control message: agentproto.StreamOpened,
// StreamCredit, StreamClose, TerminalResize, TerminalSignal (values, not
// pointers). Same error rule as HandleData. (stream_open is not passed
// here: the agent calls Accept.) Messages for a stream that is over
// already are ignored; calls after Close too.
func (m *Mux) Handle(msg any) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil
	}
	var err error
	switch v := msg.(type) {
	case agentproto.StreamOpened:
		err = m.withStream(v.StreamID, agentproto.TypeStreamOpened, func(s *Stream) error { return s.openedLocked(v) })
	case agentproto.StreamCredit:
		err = m.withStream(v.StreamID, agentproto.TypeStreamCredit, func(s *Stream) error { return s.creditLocked(v.Bytes) })
	case agentproto.StreamClose:
		err = m.withStream(v.StreamID, agentproto.TypeStreamClose, func(s *Stream) error { return s.peerCloseLocked(v) })
	case agentproto.TerminalResize:
		err = m.withStream(v.StreamID, agentproto.TypeTerminalResize, func(s *Stream) error { return s.controlLocked(v) })
	case agentproto.TerminalSignal:
		err = m.withStream(v.StreamID, agentproto.TypeTerminalSignal, func(s *Stream) error { return s.controlLocked(v) })
	default:
		err = fmt.Errorf("agentstream: cannot handle a %T", msg)
	}
	return err
}

// withStream runs fn on the stream of id under m.mu (see lookup).
func (m *Mux) withStream(id uint32, typ string, fn func(*Stream) error) error {
	s, err := m.lookup(id, typ)
	if s == nil {
		return err
	}
	return fn(s)
}

// forget drops a finished stream from the map under m.mu.
func (m *Mux) forget(s *Stream) {
	if m.streams[s.id] == s {
		delete(m.streams, s.id)
	}
}
