package longlived

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"
)

// timeout is the test servers' ReadTimeout and WriteTimeout.
const timeout = 300 * time.Millisecond

// serve starts a server with timeout as ReadTimeout and WriteTimeout.
func serve(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadTimeout: timeout, WriteTimeout: timeout}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "http://" + ln.Addr().String()
}

// outlast waits three timeouts and reports whether the request's context
// survived.
func outlast(r *http.Request) error {
	select {
	case <-r.Context().Done():
		return r.Context().Err()
	case <-time.After(3 * timeout):
		return nil
	}
}

// TestExtend: a long poll that answers after three timeouts gets its
// answer through with Extend, and loses it (context cancelled, write cut)
// without.
func TestExtend(t *testing.T) {
	for _, tc := range []struct {
		name   string
		extend bool
		body   string
	}{
		{"GET with Extend", true, ""},
		{"POST with Extend after the body", true, `{"a":1}`},
		{"GET without", false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctxErr := make(chan error, 1)
			url := serve(t, func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(io.Discard, r.Body)
				if tc.extend {
					if err := Extend(w, r, 4*timeout); err != nil {
						t.Error(err)
					}
				}
				ctxErr <- outlast(r)
				_, _ = io.WriteString(w, "answer")
			})
			res, err := http.Post(url, "application/json", strings.NewReader(tc.body))
			var got []byte
			if err == nil {
				got, err = io.ReadAll(res.Body)
				res.Body.Close()
			}
			cerr := <-ctxErr
			ok := err == nil && string(got) == "answer" && cerr == nil
			if ok != tc.extend {
				t.Errorf("answer %q, err %v, context %v; want it through: %v", got, err, cerr, tc.extend)
			}
		})
	}
}

// TestStream: a stream that lasts many write timeouts, as a proxy relays
// it (body first, then chunks), gets through with Stream.
func TestStream(t *testing.T) {
	url := serve(t, func(w http.ResponseWriter, r *http.Request) {
		sw, r := Stream(w, r, 0)
		_, _ = io.Copy(io.Discard, r.Body)
		for i := range 8 {
			if _, err := io.WriteString(sw, strings.Repeat("x", i+1)+"\n"); err != nil {
				t.Error(err)
				return
			}
			if err := sw.FlushError(); err != nil {
				t.Error(err)
				return
			}
			time.Sleep(timeout / 2)
		}
		if err := r.Context().Err(); err != nil {
			t.Errorf("request context ended: %v", err)
		}
	})
	for _, body := range []io.Reader{nil, strings.NewReader("request body")} {
		res, err := http.Post(url, "text/plain", body)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(res.Body)
		res.Body.Close()
		if err != nil || bytes.Count(got, []byte("\n")) != 8 {
			t.Errorf("got %q, %v; want 8 lines", got, err)
		}
	}
}

// TestWriterCutsAStalledReader: a client that stops reading makes a
// Writer's write fail once the timeout has passed with the socket full.
func TestWriterCutsAStalledReader(t *testing.T) {
	failed := make(chan time.Duration, 1)
	url := serve(t, func(w http.ResponseWriter, r *http.Request) {
		sw := NewWriter(w, timeout)
		chunk := bytes.Repeat([]byte("y"), 64<<10)
		for start := time.Now(); time.Since(start) < 30*time.Second; {
			t0 := time.Now()
			if _, err := sw.Write(chunk); err != nil {
				failed <- time.Since(t0)
				return
			}
		}
		failed <- -1
	})
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		return c.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	nc, err := d.DialContext(context.Background(), "tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if _, err := io.WriteString(nc, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	select {
	case took := <-failed:
		if took < 0 || took > 10*timeout {
			t.Fatalf("the blocked write took %v to fail, want about %v", took, timeout)
		}
	case <-time.After(40 * time.Second):
		t.Fatal("the stalled reader was never cut")
	}
}

// TestExtendDoesNotWaitForAnUnreadBody: a handler that extends without
// reading the body (whose rest never comes) does not hold the connection
// forever: net/http's wait for the rest of it ends with the extended read
// deadline (the answer may then be lost: its write deadline has passed
// too).
func TestExtendDoesNotWaitForAnUnreadBody(t *testing.T) {
	url := serve(t, func(w http.ResponseWriter, r *http.Request) {
		_ = Extend(w, r, timeout)
		_, _ = io.WriteString(w, "answer")
	})
	nc, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	start := time.Now()
	if _, err := io.WriteString(nc, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nab"); err != nil {
		t.Fatal(err)
	}
	_ = nc.SetReadDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.ReadAll(nc); err != nil {
		t.Fatalf("connection not closed after %v: %v", time.Since(start), err)
	}
	if d := time.Since(start); d > 10*timeout {
		t.Errorf("closed after %v, want about %v", d, 2*timeout)
	}
}
