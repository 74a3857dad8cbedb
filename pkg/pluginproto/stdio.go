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

	"github.com/home-console/client-manager/internal/linesplit"
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
	// on in pieces, each a line of its own.
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
// SyncStderr), passes each line on to out in one Write, with its newline,
// and records flush markers.
type stdioSink struct {
	out   io.Writer
	lines *linesplit.Writer

	mu      sync.Mutex
	markers []string      // the most recent markers seen, oldest first
	changed chan struct{} // closed and replaced when a marker arrives
}

func newStdioSink(out io.Writer) *stdioSink {
	s := &stdioSink{out: out, changed: make(chan struct{})}
	s.lines = linesplit.New(maxSinkLine, s.line)
	return s
}

// Write implements io.Writer.
func (s *stdioSink) Write(p []byte) (int, error) { return s.lines.Write(p) }

// line handles one line (without its newline): a marker is recorded, any
// other line passed on.
func (s *stdioSink) line(l []byte) {
	nonce, ok := bytes.CutPrefix(l, []byte(flushPrefix))
	if !ok {
		_, _ = s.out.Write(append(slices.Clip(l), '\n')) // a copy: l is not ours
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.markers = append(s.markers, string(nonce))
	if len(s.markers) > recentMarkers {
		s.markers = slices.Delete(s.markers, 0, 1)
	}
	close(s.changed)
	s.changed = make(chan struct{})
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
