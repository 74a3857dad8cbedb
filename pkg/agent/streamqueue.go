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

// queuedFrame is one frame waiting in a streamQueue.
type queuedFrame struct {
	b    []byte
	text bool // a JSON envelope; else a binary data frame
}

// streamQueue holds the stream frames waiting for the session's writer:
// control messages (encoded JSON envelopes) ahead of the data list, which
// holds the binary data frames and, in order with them, the stream_close
// messages (a stream's close follows its last data frame on the wire).
// Neither list is bounded here: the Mux sends data only within the peer's
// credit, so queued data is bounded by the streams' windows, and its
// control messages by one open and one close per stream plus a few credit
// messages per window. It is safe for concurrent use.
type streamQueue struct {
	mu     sync.Mutex
	ctl    []queuedFrame
	data   []queuedFrame
	closed bool
	wake   chan struct{} // capacity 1: something was queued
}

func newStreamQueue() *streamQueue { return &streamQueue{wake: make(chan struct{}, 1)} }

// push queues f ahead of the data (control) or behind it, without
// blocking. It fails once the queue is closed.
func (q *streamQueue) push(f queuedFrame, control bool) error {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return errSessionEnded
	}
	if control {
		q.ctl = append(q.ctl, f)
	} else {
		q.data = append(q.data, f)
	}
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
	return nil
}

// pop takes the oldest control message, or else the oldest of the data
// list; ok is false when both lists are empty.
func (q *streamQueue) pop() (f queuedFrame, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	switch {
	case len(q.ctl) > 0:
		f, q.ctl = q.ctl[0], q.ctl[1:]
		return f, true
	case len(q.data) > 0:
		f, q.data = q.data[0], q.data[1:]
		return f, true
	}
	return f, false
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
