package agent

import (
	"sync"
	"time"
	"unicode/utf8"

	"github.com/home-console/client-manager/pkg/agentproto"
)

// Output streaming bounds: pending output is sent as a command_output chunk
// after outputFlushDelay, or at once when outputChunkBytes are pending.
const (
	outputFlushDelay = 100 * time.Millisecond
	outputChunkBytes = 16 << 10
)

// stream indexes of an outputCollector.
const (
	stdoutIdx = iota
	stderrIdx
)

var streamNames = [2]string{agentproto.StreamStdout, agentproto.StreamStderr}

// outputCollector keeps a command's output up to a byte limit shared by both
// streams, and hands new output to emit in chunks as it arrives. When emit
// refuses a chunk (no connection, queue full, over the message budget) the
// output stays pending and is offered again at the next flush, so the
// stream has no gaps; what is still pending when the command ends is only in
// the result. It is safe for concurrent use by the two stream writers and
// its flush timer.
type outputCollector struct {
	commandID string
	emit      func(agentproto.CommandOutput) bool // must not block

	mu        sync.Mutex
	limit     int64
	kept      [2][]byte
	flushed   [2]int // bytes of kept already emitted
	truncated bool
	seq       int64
	timer     *time.Timer
	closed    bool
}

func newOutputCollector(commandID string, limit int64, emit func(agentproto.CommandOutput) bool) *outputCollector {
	return &outputCollector{commandID: commandID, limit: limit, emit: emit}
}

// writer returns the io.Writer of one stream.
func (c *outputCollector) writer(stream int) streamWriter {
	return streamWriter{c: c, stream: stream}
}

type streamWriter struct {
	c      *outputCollector
	stream int
}

// Write keeps what fits the limit and drops the rest; it never fails, so a
// chatty command is not killed by a write error.
func (w streamWriter) Write(p []byte) (int, error) {
	w.c.write(w.stream, p)
	return len(p), nil
}

func (c *outputCollector) write(stream int, p []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	room := c.limit - int64(len(c.kept[stdoutIdx])+len(c.kept[stderrIdx]))
	if int64(len(p)) > room {
		p = p[:max(room, 0)]
		c.truncated = true
	}
	if len(p) == 0 {
		return
	}
	c.kept[stream] = append(c.kept[stream], p...)
	switch {
	case len(c.kept[stream])-c.flushed[stream] >= outputChunkBytes:
		c.flushLocked(false)
	case c.timer == nil:
		c.timer = time.AfterFunc(outputFlushDelay, c.onTimer)
	}
}

func (c *outputCollector) onTimer() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.timer = nil
	if !c.closed {
		c.flushLocked(false)
	}
}

// flushLocked emits the pending output of both streams in chunks of at most
// outputChunkBytes. Unless final, an incomplete UTF-8 sequence at the end is
// held back for the next flush, so chunks do not split characters, and
// output emit refused is retried after outputFlushDelay.
func (c *outputCollector) flushLocked(final bool) {
	if c.timer != nil {
		c.timer.Stop()
		c.timer = nil
	}
	for s := range c.kept {
		pending := c.kept[s][c.flushed[s]:]
		if !final {
			pending = pending[:completeUTF8(pending)]
		}
		for len(pending) > 0 {
			n := min(len(pending), outputChunkBytes)
			if n < len(pending) {
				n = max(completeUTF8(pending[:n]), 1)
			}
			if !c.emit(agentproto.CommandOutput{
				CommandID: c.commandID, Stream: streamNames[s], Seq: c.seq, Data: string(pending[:n]),
			}) {
				if !final {
					c.timer = time.AfterFunc(outputFlushDelay, c.onTimer)
				}
				return
			}
			c.seq++
			c.flushed[s] += n
			pending = pending[n:]
		}
	}
}

// close emits what is pending and stops collecting. It returns the kept
// output and whether any was dropped.
func (c *outputCollector) close() (stdout, stderr string, truncated bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closed {
		c.flushLocked(true)
		c.closed = true
	}
	return string(c.kept[stdoutIdx]), string(c.kept[stderrIdx]), c.truncated
}

// completeUTF8 returns the length of the longest prefix of b that does not
// end inside a UTF-8 sequence. Invalid bytes count as complete.
func completeUTF8(b []byte) int {
	for i := len(b) - 1; i >= 0 && i >= len(b)-utf8.UTFMax; i-- {
		if utf8.RuneStart(b[i]) {
			if utf8.FullRune(b[i:]) {
				return len(b)
			}
			return i
		}
	}
	return len(b)
}
