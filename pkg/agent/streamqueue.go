package agent

import (
	"errors"
	"sync"
)

// errSessionEnded refuses frames queued after the connection ended.
var errSessionEnded = errors.New("connection ended")

// closedChan is always ready; the writer selects on it when stream frames
// are waiting.
var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// streamQueue holds the stream frames waiting for the session's writer:
// control messages (encoded JSON envelopes) ahead of data (binary frames).
// Neither list is bounded here: the Mux sends data only within the peer's
// credit, so queued data is bounded by the streams' windows, and its
// control messages by one open and one close per stream plus a few credit
// messages per window. It is safe for concurrent use.
type streamQueue struct {
	mu     sync.Mutex
	ctl    [][]byte
	data   [][]byte
	closed bool
	wake   chan struct{} // capacity 1: something was queued
}

func newStreamQueue() *streamQueue { return &streamQueue{wake: make(chan struct{}, 1)} }

// push queues b, a control message or a data frame, without blocking. It
// fails once the queue is closed.
func (q *streamQueue) push(b []byte, control bool) error {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return errSessionEnded
	}
	if control {
		q.ctl = append(q.ctl, b)
	} else {
		q.data = append(q.data, b)
	}
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
	return nil
}

// pop takes the oldest control message, or else the oldest data frame;
// ok is false when both lists are empty.
func (q *streamQueue) pop() (b []byte, control, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	switch {
	case len(q.ctl) > 0:
		b, q.ctl = q.ctl[0], q.ctl[1:]
		return b, true, true
	case len(q.data) > 0:
		b, q.data = q.data[0], q.data[1:]
		return b, false, true
	}
	return nil, false, false
}

// ready returns a channel that is ready when frames are waiting: closedChan
// if some are queued now, else the wake channel.
func (q *streamQueue) ready() <-chan struct{} {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.ctl)+len(q.data) > 0 {
		return closedChan
	}
	return q.wake
}

// close drops what is queued and refuses further frames. Idempotent.
func (q *streamQueue) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	q.ctl, q.data = nil, nil
}
