package pluginproto

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"
)

// Log flushing on Stop. The logs a plugin writes through a [LogWriter]
// travel over go-plugin's stdio stream, which is independent of the Stop
// RPC's answer: the host could close the connection before it has read
// the plugin's last lines. So the plugin's Stop handler flushes its
// LogWriter, followed by a marker line naming a random nonce, and returns
// the nonce in a response trailer; the host's Stop waits (briefly) until
// the marker has come through the stream. Marker lines are not passed on.
const (
	// flushTrailer is the Stop response trailer carrying the nonce.
	flushTrailer = "pluginproto-log-flush"
	// flushPrefix starts a marker line; the NUL keeps it apart from logs.
	flushPrefix = "\x00pluginproto-log-flush "
	// flushWait bounds how long the host waits for a marker.
	flushWait = 2 * time.Second
	// maxSinkLine bounds a buffered partial line; longer lines are passed
	// on in pieces.
	maxSinkLine = 64 << 10
	// recentMarkers is how many markers a sink remembers.
	recentMarkers = 8
)

// newNonce returns a random marker nonce.
func newNonce() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// markerLine is the marker line for nonce.
func markerLine(nonce string) []byte {
	return []byte(flushPrefix + nonce + "\n")
}

// stdioSink receives one of a plugin's streams (go-plugin's SyncStdout or
// SyncStderr), passes complete lines on to out and records flush markers.
type stdioSink struct {
	out io.Writer

	mu      sync.Mutex
	buf     []byte
	markers []string      // the most recent markers seen, oldest first
	changed chan struct{} // closed and replaced when a marker arrives
}

func newStdioSink(out io.Writer) *stdioSink {
	return &stdioSink{out: out, changed: make(chan struct{})}
}

// Write implements io.Writer.
func (s *stdioSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.buf = append(s.buf, p...)
	for {
		i := bytes.IndexByte(s.buf, '\n')
		if i < 0 && len(s.buf) < maxSinkLine {
			break
		}
		if i < 0 {
			i = len(s.buf) - 1
		}
		s.line(s.buf[:i+1])
		s.buf = s.buf[i+1:]
	}
	if len(s.buf) == 0 {
		s.buf = nil
	}
	return len(p), nil
}

// line handles one line (with its newline, if any). The caller holds s.mu.
func (s *stdioSink) line(l []byte) {
	if nonce, ok := bytes.CutPrefix(bytes.TrimRight(l, "\n"), []byte(flushPrefix)); ok {
		s.markers = append(s.markers, string(nonce))
		if len(s.markers) > recentMarkers {
			s.markers = slices.Delete(s.markers, 0, 1)
		}
		close(s.changed)
		s.changed = make(chan struct{})
		return
	}
	_, _ = s.out.Write(l)
}

// wait blocks until the marker for nonce has arrived or ctx ends.
func (s *stdioSink) wait(ctx context.Context, nonce string) error {
	for {
		s.mu.Lock()
		seen, changed := slices.Contains(s.markers, nonce), s.changed
		s.mu.Unlock()
		if seen {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("waiting for the plugin's logs: %w", ctx.Err())
		}
	}
}
