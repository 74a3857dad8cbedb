package sessions

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"time"
	"unicode/utf8"
)

// Asciicast v2 event types this package writes.
const (
	eventOutput = "o"
	eventInput  = "i"
	eventMarker = "m"
	eventResize = "r"
)

// castHeader is the first line of an asciicast v2 file.
type castHeader struct {
	Version   int               `json:"version"`
	Width     int               `json:"width"`
	Height    int               `json:"height"`
	Timestamp int64             `json:"timestamp"`
	Env       map[string]string `json:"env"`
	Title     string            `json:"title,omitempty"`
}

// capMarker is the label of the marker event that ends a recording at
// its size cap.
const capMarker = "recording stopped: size limit reached"

// recorder writes one session's asciicast v2 file: a header line, then
// one [seconds, type, text] line per event. Text is valid UTF-8: bytes of
// a character split between two chunks wait for the next chunk. At the
// size cap it writes a final marker event and stops recording. Its
// methods are safe for concurrent use; errors after the first are not
// reported again (the session goes on without its recording).
type recorder struct {
	mu      sync.Mutex
	f       *os.File
	w       *bufio.Writer
	start   time.Time
	max     int64
	written int64
	stopped bool
	pending map[string][]byte // incomplete UTF-8 tails by event type
	err     error
}

// newRecorder creates path and writes the header.
func newRecorder(path string, h castHeader, start time.Time, max int64) (*recorder, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("recording: %w", err)
	}
	r := &recorder{f: f, w: bufio.NewWriter(f), start: start, max: max, pending: map[string][]byte{}}
	line, _ := json.Marshal(h)
	if err := r.writeLine(line); err != nil {
		_ = f.Close()
		return nil, err
	}
	return r, nil
}

// writeLine writes one line and counts it.
func (r *recorder) writeLine(line []byte) error {
	if _, err := r.w.Write(append(line, '\n')); err != nil {
		r.err = fmt.Errorf("recording: %w", err)
		return r.err
	}
	r.written += int64(len(line)) + 1
	return nil
}

// Event records data of type typ (eventOutput, eventInput) at time now.
func (r *recorder) Event(now time.Time, typ string, data []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped || r.err != nil {
		return
	}
	buf := append(r.pending[typ], data...)
	cut := completeUTF8(buf)
	r.pending[typ] = append([]byte(nil), buf[cut:]...)
	if cut == 0 {
		return
	}
	line := eventLine(now.Sub(r.start), typ, string(buf[:cut]))
	marker := eventLine(now.Sub(r.start), eventMarker, capMarker)
	if r.written+int64(len(line)+len(marker))+2 > r.max {
		r.stopped = true
		_ = r.writeLine(marker)
		return
	}
	_ = r.writeLine(line)
}

// completeUTF8 returns the length of b without an incomplete character at
// its end (at most 3 bytes are held back; invalid bytes are not held).
func completeUTF8(b []byte) int {
	for i := 1; i <= 3 && i <= len(b); i++ {
		c := b[len(b)-i]
		if c < 0x80 {
			return len(b)
		}
		if utf8.RuneStart(c) {
			if utf8.FullRune(b[len(b)-i:]) {
				return len(b)
			}
			return len(b) - i
		}
	}
	return len(b)
}

// eventLine is the JSON line of an event at elapsed time d.
func eventLine(d time.Duration, typ, text string) []byte {
	line, _ := json.Marshal([]any{json.Number(fmt.Sprintf("%.6f", d.Seconds())), typ, text})
	return line
}

// Close flushes and closes the file and returns its size.
func (r *recorder) Close() (int64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ferr := r.w.Flush()
	cerr := r.f.Close()
	switch {
	case r.err != nil:
		return r.written, r.err
	case ferr != nil:
		return r.written, fmt.Errorf("recording: %w", ferr)
	case cerr != nil:
		return r.written, fmt.Errorf("recording: %w", cerr)
	}
	return r.written, nil
}

// Size returns the bytes written so far.
func (r *recorder) Size() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.written
}
