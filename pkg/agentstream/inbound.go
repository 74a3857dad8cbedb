package agentstream

import (
	"fmt"

	"github.com/home-console/client-manager/pkg/agentproto"
)

// The methods below act on one inbound message for s, under m.mu. An
// error is a protocol violation by the peer.

// receiveLocked takes a data frame's payload.
func (s *Stream) receiveLocked(payload []byte) error {
	switch {
	case s.awaiting:
		return fmt.Errorf("binary frame for stream %d before stream_opened", s.id)
	case s.peerClose != nil:
		return fmt.Errorf("binary frame for stream %d after its stream_close", s.id)
	}
	n := int64(len(payload))
	if n > s.window-s.unacked {
		return fmt.Errorf("stream %d: %d bytes beyond credit (window %d, %d uncredited)", s.id, n, s.window, s.unacked)
	}
	s.unacked += n
	s.bytesIn.Add(n)
	if s.abort != nil || n == 0 {
		return nil // in flight when this side aborted: dropped
	}
	if len(s.buf) == 0 && cap(s.buf) < len(payload) {
		s.buf = make([]byte, 0, min(s.window, max(n, 4096)))
	}
	s.buf = append(s.buf, payload...)
	wake(s.rwake)
	return nil
}

// openedLocked takes stream_opened.
func (s *Stream) openedLocked(o agentproto.StreamOpened) error {
	if !s.awaiting {
		if s.abort != nil {
			return nil // this side gave up while it was in flight
		}
		return fmt.Errorf("unexpected stream_opened for stream %d", s.id)
	}
	s.awaiting = false
	s.opened = o
	close(s.openedCh)
	return nil
}

// creditLocked takes stream_credit.
func (s *Stream) creditLocked(n int64) error {
	if n <= 0 {
		return fmt.Errorf("stream_credit for stream %d with %d bytes", s.id, n)
	}
	s.sendCredit += n
	if s.sendCredit > s.window {
		return fmt.Errorf("stream_credit for stream %d exceeds its window %d", s.id, s.window)
	}
	wake(s.wwake)
	return nil
}

// peerCloseLocked takes the peer's stream_close: a clean one ends the
// peer's side (Read returns io.EOF once the buffer is read), one with a
// Code aborts the stream and is answered with this side's stream_close.
func (s *Stream) peerCloseLocked(c agentproto.StreamClose) error {
	switch {
	case s.peerClose != nil:
		return fmt.Errorf("second stream_close for stream %d", s.id)
	case s.awaiting && c.Code == "":
		return fmt.Errorf("stream_close without a code for stream %d before stream_opened", s.id)
	}
	s.peerClose = &c
	if c.Code != "" {
		s.awaiting = false
		if s.abort == nil {
			s.abort = &CloseError{Close: c, Remote: true}
			s.buf, s.off = nil, 0
		}
		if !s.sentClose {
			s.sentClose = true
			answer := agentproto.StreamClose{StreamID: s.id, Bytes: s.bytesOut.Load()}
			// A failure means the connection is going: not the peer's fault.
			_ = s.m.t.SendControl(agentproto.TypeStreamClose, answer)
		}
		s.endLocked()
	}
	wake(s.rwake)
	wake(s.wwake)
	if s.sentClose {
		s.finishLocked()
	}
	return nil
}

// controlLocked takes terminal_resize or terminal_signal (server → agent).
func (s *Stream) controlLocked(v any) error {
	if s.controls == nil {
		return fmt.Errorf("terminal control for stream %d, which this side opened", s.id)
	}
	if s.abort != nil || s.peerClose != nil {
		return nil
	}
	select {
	case s.controls <- v:
		return nil
	default:
	}
	pending := make([]any, 0, controlsBuffer)
drain:
	for {
		select {
		case x := <-s.controls:
			pending = append(pending, x)
		default:
			break drain
		}
	}
	if len(pending) == controlsBuffer {
		drop := 0
		for i, x := range pending {
			if _, ok := x.(agentproto.TerminalResize); ok {
				drop = i
				break
			}
		}
		pending = append(pending[:drop], pending[drop+1:]...)
	}
	for _, x := range pending {
		s.controls <- x
	}
	s.controls <- v
	return nil
}
