package agentstream

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync/atomic"

	"github.com/home-console/client-manager/pkg/agentproto"
)

// controlsBuffer is how many terminal controls a stream holds unread.
const controlsBuffer = 16

// Stream is one stream of a Mux. Read and Write may run concurrently with
// each other and with every other method; concurrent Writes are
// serialized (each one's chunks stay together), concurrent Reads too.
type Stream struct {
	m      *Mux
	id     uint32
	req    agentproto.StreamOpen
	window int64

	// guarded by m.mu
	sendCredit int64  // payload this side may still send
	unacked    int64  // payload received and not yet credited back
	consumed   int64  // of unacked, what Read consumed
	buf        []byte // received, not yet read: buf[off:]
	off        int
	awaiting   bool // Open waits for stream_opened
	accepted   bool // stream_opened sent (agent side)
	sentClose  bool
	peerClose  *agentproto.StreamClose
	abort      *CloseError
	finished   bool
	opened     agentproto.StreamOpened

	bytesIn, bytesOut atomic.Int64

	openedCh chan struct{} // closed when stream_opened arrives
	rwake    chan struct{} // data, close or abort for a waiting Read
	wwake    chan struct{} // credit, close or abort for a waiting Write
	wsem     chan struct{} // serializes Writes
	done     chan struct{}
	controls chan any
}

func newStream(m *Mux, open agentproto.StreamOpen, window int64, awaiting bool) *Stream {
	s := &Stream{
		m: m, id: open.StreamID, req: open, window: window,
		sendCredit: window, awaiting: awaiting,
		rwake: make(chan struct{}, 1), wwake: make(chan struct{}, 1), wsem: make(chan struct{}, 1),
		done: make(chan struct{}),
	}
	if awaiting {
		s.openedCh = make(chan struct{})
	} else {
		s.controls = make(chan any, controlsBuffer)
	}
	return s
}

// ID returns the stream id.
func (s *Stream) ID() uint32 { return s.id }

// Kind returns what the stream carries.
func (s *Stream) Kind() agentproto.StreamKind { return s.req.Kind }

// Request returns the stream_open of the stream (StreamID filled in).
func (s *Stream) Request() agentproto.StreamOpen { return s.req }

// Done is closed when the stream is over (both sides closed, or aborted,
// or the Mux closed).
func (s *Stream) Done() <-chan struct{} { return s.done }

// BytesIn returns the payload received.
func (s *Stream) BytesIn() int64 { return s.bytesIn.Load() }

// BytesOut returns the payload sent.
func (s *Stream) BytesOut() int64 { return s.bytesOut.Load() }

// PeerClose returns the peer's stream_close once received.
func (s *Stream) PeerClose() (agentproto.StreamClose, bool) {
	s.m.mu.Lock()
	defer s.m.mu.Unlock()
	if s.peerClose == nil {
		return agentproto.StreamClose{}, false
	}
	return *s.peerClose, true
}

// Controls (agent side) delivers terminal_resize / terminal_signal values
// (agentproto.TerminalResize, TerminalSignal) in order; buffered (16), a
// full buffer drops the oldest resize (or, holding none, the oldest
// control) — it never blocks the reader. It is closed when the stream is
// over. Nil for a stream made by Open.
func (s *Stream) Controls() <-chan any { return s.controls }

// Read blocks for data; io.EOF after the peer's clean stream_close (no
// Code) once the buffered bytes are read; *CloseError after an abort
// (buffered bytes are dropped). It returns credit (stream_credit) as bytes
// are consumed, in batches of at least window/4. Buffered ≤ window.
func (s *Stream) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	m := s.m
	m.mu.Lock()
	for {
		if s.abort != nil {
			m.mu.Unlock()
			return 0, s.abort
		}
		if len(s.buf) > s.off {
			n := copy(p, s.buf[s.off:])
			s.off += n
			if s.off == len(s.buf) {
				s.buf, s.off = s.buf[:0], 0
			} else {
				wake(s.rwake) // for another waiting Read
			}
			err := s.consumeLocked(int64(n))
			m.mu.Unlock()
			return n, err
		}
		if s.peerClose != nil {
			m.mu.Unlock()
			return 0, io.EOF
		}
		m.mu.Unlock()
		select {
		case <-s.rwake:
		case <-s.done:
		}
		m.mu.Lock()
	}
}

// consumeLocked counts n bytes read and returns credit once a batch is
// due and the peer may still send.
func (s *Stream) consumeLocked(n int64) error {
	s.consumed += n
	if s.consumed < max(1, s.window/4) || s.peerClose != nil || s.m.closed {
		return nil
	}
	credit := agentproto.StreamCredit{StreamID: s.id, Bytes: s.consumed}
	s.unacked -= s.consumed
	s.consumed = 0
	if err := s.m.t.SendControl(agentproto.TypeStreamCredit, credit); err != nil {
		return fmt.Errorf("agentstream: send stream_credit: %w", err)
	}
	return nil
}

// Write splits p into chunks, blocking for credit. *CloseError after an
// abort, ErrWriteClosed after CloseWrite, or the transport's error.
func (s *Stream) Write(p []byte) (int, error) {
	return s.WriteContext(context.Background(), p)
}

// WriteContext is Write that gives up when ctx ends, returning the bytes
// sent and ctx.Err() (the stream stays usable).
func (s *Stream) WriteContext(ctx context.Context, p []byte) (int, error) {
	select {
	case s.wsem <- struct{}{}:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	defer func() { <-s.wsem }()
	written := 0
	for {
		n, err := s.awaitCredit(ctx, len(p)-written)
		if err != nil || n == 0 {
			return written, err
		}
		frame := make([]byte, agentproto.StreamHeaderBytes+n)
		binary.BigEndian.PutUint32(frame, s.id)
		copy(frame[agentproto.StreamHeaderBytes:], p[written:written+n])
		if err := s.sendData(frame); err != nil {
			return written, err
		}
		written += n
	}
}

// awaitCredit waits until this side may send, and takes up to want bytes
// of credit (at most a chunk). want 0 only checks that writing is allowed.
func (s *Stream) awaitCredit(ctx context.Context, want int) (int, error) {
	m := s.m
	m.mu.Lock()
	for {
		if err := s.writeErrLocked(); err != nil {
			m.mu.Unlock()
			return 0, err
		}
		if want == 0 {
			m.mu.Unlock()
			return 0, nil
		}
		if s.sendCredit > 0 {
			n := int(min(int64(want), int64(m.cfg.Chunk), s.sendCredit))
			s.sendCredit -= int64(n)
			m.mu.Unlock()
			return n, nil
		}
		m.mu.Unlock()
		select {
		case <-s.wwake:
		case <-s.done:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
		m.mu.Lock()
	}
}

// sendData queues one frame unless the stream stopped meanwhile: no data
// may follow this side's stream_close.
func (s *Stream) sendData(frame []byte) error {
	m := s.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := s.writeErrLocked(); err != nil {
		return err
	}
	if err := m.t.SendData(frame); err != nil {
		return fmt.Errorf("agentstream: send data: %w", err)
	}
	s.bytesOut.Add(int64(len(frame) - agentproto.StreamHeaderBytes))
	return nil
}

func (s *Stream) writeErrLocked() error {
	switch {
	case s.abort != nil:
		return s.abort
	case s.sentClose:
		return ErrWriteClosed
	}
	return nil
}

// CloseWrite sends this side's clean stream_close (c.StreamID is filled
// in; c.Bytes defaults to the bytes written when 0; a c.Code makes it
// AbortWith). Second call: ErrWriteClosed; after an abort: its *CloseError.
func (s *Stream) CloseWrite(c agentproto.StreamClose) error {
	if c.Code != "" {
		return s.AbortWith(c)
	}
	m := s.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := s.writeErrLocked(); err != nil {
		return err
	}
	c.StreamID = s.id
	if c.Bytes == 0 {
		c.Bytes = s.bytesOut.Load()
	}
	s.sentClose = true
	wake(s.wwake)
	err := m.t.SendControl(agentproto.TypeStreamClose, c)
	if s.peerClose != nil {
		s.finishLocked()
	}
	if err != nil {
		return fmt.Errorf("agentstream: send stream_close: %w", err)
	}
	return nil
}

// Abort sends stream_close{code,message} (unless this side already sent
// its close) and ends Read/Write with a *CloseError (Remote false).
// Idempotent: a stream already aborted (either way) is left as it is.
func (s *Stream) Abort(code, message string) error {
	return s.AbortWith(agentproto.StreamClose{Code: code, Message: message})
}

// AbortWith is Abort carrying extra fields (Offset for offset_mismatch). An
// empty Code is agentproto.StreamErrorCancelled.
func (s *Stream) AbortWith(c agentproto.StreamClose) error {
	if c.Code == "" {
		c.Code = agentproto.StreamErrorCancelled
	}
	c.StreamID = s.id
	m := s.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if s.abort != nil {
		return nil
	}
	send := !s.sentClose
	s.abortLocked(c)
	s.sentClose = true
	if s.peerClose != nil {
		s.finishLocked()
	}
	if send {
		if err := m.t.SendControl(agentproto.TypeStreamClose, c); err != nil {
			return fmt.Errorf("agentstream: send stream_close: %w", err)
		}
	}
	return nil
}

// Accept (agent side) sends stream_opened (StreamID filled in). A second
// call is an error; after an abort, its *CloseError.
func (s *Stream) Accept(o agentproto.StreamOpened) error {
	m := s.m
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case s.abort != nil:
		return s.abort
	case s.awaiting || s.openedCh != nil:
		return errors.New("agentstream: Accept on a stream this side opened")
	case s.accepted:
		return errors.New("agentstream: stream accepted already")
	}
	s.accepted = true
	o.StreamID = s.id
	if err := m.t.SendControl(agentproto.TypeStreamOpened, o); err != nil {
		return fmt.Errorf("agentstream: send stream_opened: %w", err)
	}
	return nil
}

// endErr is why a stream that did not open ended.
func (s *Stream) endErr() error {
	s.m.mu.Lock()
	defer s.m.mu.Unlock()
	if s.abort != nil {
		return s.abort
	}
	return ErrClosed
}

// abortLocked ends the stream for Read and Write with a local abort.
func (s *Stream) abortLocked(c agentproto.StreamClose) {
	if s.abort != nil {
		return
	}
	s.abort = &CloseError{Close: c}
	s.awaiting = false
	s.buf, s.off = nil, 0
	s.endLocked()
}

// endLocked closes Done and wakes every waiter; once.
func (s *Stream) endLocked() {
	select {
	case <-s.done:
		return
	default:
	}
	close(s.done)
	if s.controls != nil {
		close(s.controls)
	}
}

// finishLocked ends a stream both sides closed: it leaves the Mux.
func (s *Stream) finishLocked() {
	if s.finished {
		return
	}
	s.finished = true
	s.endLocked()
	s.m.forget(s)
}

func wake(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}
