// Package linesplit cuts a byte stream, written in chunks cut anywhere,
// into lines for consumers that handle one line at a time.
package linesplit

import (
	"bytes"
	"sync"
)

// Writer is an io.Writer that calls a function once for every line
// written to it, in order. It is safe for concurrent use: the function is
// called with the Writer's lock held, never concurrently with itself.
type Writer struct {
	max  int
	line func([]byte)

	mu  sync.Mutex
	buf []byte
}

// New returns a Writer calling line with each line's content, without its
// terminating "\n" (a "\r" before it is kept). Bytes not yet terminated
// are buffered: once more than max of them have arrived without a newline,
// the first max are passed on as a line of their own. line must neither
// modify the slice nor keep it after it returns. A partial line still buffered when writing
// stops is never passed on.
func New(max int, line func([]byte)) *Writer {
	return &Writer{max: max, line: line}
}

// Write implements io.Writer; it always consumes all of p.
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	rest := w.buf
	for {
		n, skip := bytes.IndexByte(rest, '\n'), 1
		if n < 0 || n > w.max {
			if len(rest) <= w.max {
				break
			}
			n, skip = w.max, 0
		}
		w.line(rest[:n])
		rest = rest[n+skip:]
	}
	// Keep only the partial line, in a buffer of its own size.
	w.buf = nil
	if len(rest) > 0 {
		w.buf = append([]byte(nil), rest...)
	}
	return len(p), nil
}
