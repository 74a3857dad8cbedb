// Package longlived moves the deadlines of a connection whose response
// outlives its HTTP server's ReadTimeout and WriteTimeout: an event
// stream, a long poll, a proxied stream.
//
// net/http sets a connection's read deadline when it starts reading a
// request (ReadTimeout) and its write deadline once the header is read
// (WriteTimeout). Both would cut a response that legitimately takes
// longer: past the read deadline the server's wait for the peer's next
// byte fails and cancels the request's context, and past the write
// deadline every write fails. A handler that answers later calls [Extend];
// one that streams uses [Stream]. Hijacked
// connections (WebSockets) need neither: net/http clears both deadlines
// when it hands a connection over.
package longlived

import (
	"io"
	"net/http"
	"time"
)

// server returns the server serving r (nil when unknown).
func server(r *http.Request) *http.Server {
	srv, _ := r.Context().Value(http.ServerContextKey).(*http.Server)
	return srv
}

// Extend prepares the connection of w for a handler that writes its
// answer within busy from now: the read deadline moves to busy plus the
// server's ReadTimeout from now (so that the server's wait for the
// peer's next byte does not end the request first, while the rest of an
// unread body is still not waited for forever), and the write deadline to
// busy plus the server's WriteTimeout from now. A deadline the server
// does not have is left alone. It returns the error of a ResponseWriter
// that cannot set deadlines.
func Extend(w http.ResponseWriter, r *http.Request, busy time.Duration) error {
	srv := server(r)
	if srv == nil {
		return nil
	}
	rc := http.NewResponseController(w)
	now := time.Now()
	if srv.ReadTimeout > 0 {
		if err := rc.SetReadDeadline(now.Add(busy + srv.ReadTimeout)); err != nil {
			return err
		}
	}
	if srv.WriteTimeout > 0 {
		return rc.SetWriteDeadline(now.Add(busy + srv.WriteTimeout))
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
// takes (an event stream, a reverse proxy's response): it returns a
// [Writer] over w whose writes each have timeout (the server's
// WriteTimeout when timeout is 0), and r with a body that clears the read
// deadline once read to its end (at once when r has no body). The request
// body itself still has to arrive within the server's ReadTimeout.
func Stream(w http.ResponseWriter, r *http.Request, timeout time.Duration) (*Writer, *http.Request) {
	if timeout <= 0 {
		if srv := server(r); srv != nil {
			timeout = srv.WriteTimeout
		}
	}
	sw := NewWriter(w, timeout)
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
