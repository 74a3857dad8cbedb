// Package longlived moves the deadlines of a connection whose response
// outlives its HTTP server's ReadTimeout and WriteTimeout: an event
// stream, a long poll, a proxied stream.
//
// net/http sets a connection's read deadline when it starts reading a
// request (ReadTimeout) and its write deadline once the header is read
// (WriteTimeout). Both would cut a response that legitimately takes
// longer: past the read deadline the server's wait for the peer's next
// byte fails and cancels the request's context, and past the write
// deadline every write fails. A handler that takes longer calls [Extend]
// once its request body is read, or streams through a [Writer]. Hijacked
// connections (WebSockets) need neither: net/http clears both deadlines
// when it hands a connection over.
package longlived

import (
	"io"
	"net/http"
	"time"
)

// writeTimeout returns the WriteTimeout of the server serving r (0 when
// none or unknown).
func writeTimeout(r *http.Request) time.Duration {
	if srv, ok := r.Context().Value(http.ServerContextKey).(*http.Server); ok {
		return srv.WriteTimeout
	}
	return 0
}

// Extend prepares the connection of w for a handler that writes its
// answer within busy from now: the read deadline is cleared (call Extend
// once the request's body has been read) and the write deadline is set to
// busy plus the server's WriteTimeout from now (left alone when the server
// has none). It returns the error of a ResponseWriter that cannot set
// deadlines.
func Extend(w http.ResponseWriter, r *http.Request, busy time.Duration) error {
	rc := http.NewResponseController(w)
	if err := rc.SetReadDeadline(time.Time{}); err != nil {
		return err
	}
	if wt := writeTimeout(r); wt > 0 {
		return rc.SetWriteDeadline(time.Now().Add(busy + wt))
	}
	return nil
}

// Writer is an http.ResponseWriter for a response of unbounded length,
// such as a stream: each Write and Flush must complete within its timeout
// (its write deadline is set before each), however long the response
// lasts. A Writer with a zero timeout sets no deadline.
type Writer struct {
	http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
}

// NewWriter returns a Writer over w whose writes each have timeout.
func NewWriter(w http.ResponseWriter, timeout time.Duration) *Writer {
	return &Writer{ResponseWriter: w, rc: http.NewResponseController(w), timeout: timeout}
}

// arm sets the write deadline for the next write.
func (w *Writer) arm() error {
	if w.timeout <= 0 {
		return nil
	}
	return w.rc.SetWriteDeadline(time.Now().Add(w.timeout))
}

// WriteHeader implements http.ResponseWriter; a response without a body
// writes its header on the way out, so the deadline is set here too.
func (w *Writer) WriteHeader(status int) {
	_ = w.arm()
	w.ResponseWriter.WriteHeader(status)
}

// Write implements io.Writer.
func (w *Writer) Write(p []byte) (int, error) {
	if err := w.arm(); err != nil {
		return 0, err
	}
	return w.ResponseWriter.Write(p)
}

// FlushError flushes buffered data to the client within the timeout; it
// is what http.ResponseController.Flush calls.
func (w *Writer) FlushError() error {
	if err := w.arm(); err != nil {
		return err
	}
	return w.rc.Flush()
}

// Flush implements http.Flusher.
func (w *Writer) Flush() { _ = w.FlushError() }

// Unwrap returns the wrapped ResponseWriter, for http.ResponseController
// (Hijack, EnableFullDuplex).
func (w *Writer) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Stream prepares a request whose response is streamed for as long as it
// takes (a reverse proxy's): it returns a [Writer] over w with the
// server's WriteTimeout, and r with a body that clears the read deadline
// once read to its end (at once when r has no body). The request body
// itself still has to arrive within the server's ReadTimeout.
func Stream(w http.ResponseWriter, r *http.Request) (*Writer, *http.Request) {
	sw := NewWriter(w, writeTimeout(r))
	if r.Body == nil || r.Body == http.NoBody {
		_ = sw.rc.SetReadDeadline(time.Time{})
		return sw, r
	}
	r2 := r.WithContext(r.Context())
	r2.Body = &releasingBody{ReadCloser: r.Body, rc: sw.rc}
	return sw, r2
}

// releasingBody clears the read deadline at the end of the body.
type releasingBody struct {
	io.ReadCloser
	rc   *http.ResponseController
	done bool
}

// Read implements io.Reader.
func (b *releasingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF && !b.done {
		b.done = true
		_ = b.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}
