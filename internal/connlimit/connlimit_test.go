package connlimit

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// server serves handler behind a Listener of cfg on a loopback port and
// returns the listener and its address.
func server(t *testing.T, cfg Config, inner net.Listener, handler http.Handler) (*Listener, string) {
	t.Helper()
	if inner == nil {
		var err error
		if inner, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
	}
	l := New(inner, cfg)
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: time.Minute}
	l.Configure(srv)
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return l, inner.Addr().String()
}

// dial opens a connection and writes raw to it.
func dial(t *testing.T, addr, raw string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if raw != "" {
		if _, err := io.WriteString(c, raw); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// get sends a complete GET on c and reads the status line and headers of
// the answer; the connection stays open (keep-alive).
func get(t *testing.T, c net.Conn, path string) *http.Response {
	t.Helper()
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	_ = c.SetReadDeadline(time.Time{})
	return res
}

// closedByServer reports whether the server closed c within d.
func closedByServer(c net.Conn, d time.Duration) bool {
	_ = c.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	return !(errors.As(err, &ne) && ne.Timeout())
}

func waitStats(t *testing.T, l *Listener, ok func(Stats) bool) Stats {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		st := l.Stats()
		if ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("stats %+v", st)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitWaiting waits until n connections wait (are idle, or not yet
// served): the server marks a kept-alive connection idle only after it
// has written the answer the client may already have read.
func waitWaiting(t *testing.T, l *Listener, n int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		l.mu.Lock()
		got := l.waiting.Len()
		l.mu.Unlock()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d connections waiting, want %d", got, n)
		}
	}
}

var okHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	_, _ = io.WriteString(w, "ok")
})

// TestLimitShedsTheLongestWaiting fills the limit with connections that
// wait in each way a connection can (keep-alive idle, never sent
// anything, half a header, half a body), then connects once more: the
// new connection is served and the oldest waiting one is closed.
func TestLimitShedsTheLongestWaiting(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, c net.Conn)
	}{
		{"keep-alive idle", func(t *testing.T, c net.Conn) { get(t, c, "/") }},
		{"nothing sent", func(*testing.T, net.Conn) {}},
		{"half a header", func(t *testing.T, c net.Conn) { _, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n") }},
		{"half a body", func(t *testing.T, c net.Conn) {
			_, _ = io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nab")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const limit = 3
			l, addr := server(t, Config{Max: limit}, nil, okHandler)
			var waiting []net.Conn
			for range limit {
				c := dial(t, addr, "")
				tc.setup(t, c)
				waiting = append(waiting, c)
				time.Sleep(20 * time.Millisecond) // accepted in this order
			}
			waitStats(t, l, func(s Stats) bool { return s.Open == limit })
			waitWaiting(t, l, limit)
			if res := get(t, dial(t, addr, ""), "/"); res.StatusCode != http.StatusOK {
				t.Fatalf("new connection got %d", res.StatusCode)
			}
			if !closedByServer(waiting[0], 5*time.Second) {
				t.Error("the oldest waiting connection is still open")
			}
			for _, c := range waiting[1:] {
				if closedByServer(c, 100*time.Millisecond) {
					t.Error("a younger waiting connection was closed")
				}
			}
			st := waitStats(t, l, func(s Stats) bool { return s.ShedLimit == 1 })
			if st.Open != limit || st.ShedNoDescriptors != 0 {
				t.Errorf("stats %+v, want %d open", st, limit)
			}
		})
	}
}

// TestServingConnectionsAreNeverShed fills the limit with requests being
// served (long polls): a new connection is closed at once and the served
// ones finish normally.
func TestServingConnectionsAreNeverShed(t *testing.T) {
	const limit = 2
	release := make(chan struct{})
	var started atomic.Int32
	l, addr := server(t, Config{Max: limit}, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started.Add(1)
		<-release
		_, _ = io.WriteString(w, "done")
	}))
	var served []net.Conn
	for range limit {
		served = append(served, dial(t, addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
	}
	for started.Load() < limit {
		time.Sleep(5 * time.Millisecond)
	}
	if !closedByServer(dial(t, addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"), 5*time.Second) {
		t.Fatal("a connection over the limit was not closed while every other was serving")
	}
	close(release)
	for _, c := range served {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		res, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil || res.StatusCode != http.StatusOK {
			t.Fatalf("served connection: %v", err)
		}
	}
	if st := l.Stats(); st.ShedLimit != 1 {
		t.Errorf("stats %+v, want 1 shed", st)
	}
}

// TestHijackedConnectionsCountUntilClosed: a hijacked connection holds its
// place until its new owner closes it.
func TestHijackedConnectionsCountUntilClosed(t *testing.T) {
	hijacked := make(chan net.Conn, 1)
	l, addr := server(t, Config{Max: 10}, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		nc, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		hijacked <- nc
	}))
	dial(t, addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	nc := <-hijacked
	if st := l.Stats(); st.Open != 1 {
		t.Errorf("open %d with a hijacked connection, want 1", st.Open)
	}
	_ = nc.Close()
	waitStats(t, l, func(s Stats) bool { return s.Open == 0 })
}

// failing is a listener whose next Accept calls fail with EMFILE while
// fail is positive, as a real one does when the process is out of
// descriptors: the pending connection stays in the backlog.
type failing struct {
	net.Listener
	fail atomic.Int32
}

func (f *failing) Accept() (net.Conn, error) {
	if f.fail.Add(-1) >= 0 {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: syscall.EMFILE}
	}
	return f.Listener.Accept()
}

// TestOutOfDescriptors: when Accept fails with EMFILE the listener closes
// the longest-waiting connection, or with none accepts and closes the
// pending one; either way the server goes on serving.
func TestOutOfDescriptors(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &failing{Listener: inner}
	l, addr := server(t, Config{Max: 100}, f, okHandler)

	// Nothing waiting: the pending connection is accepted and closed.
	f.fail.Store(1)
	if !closedByServer(dial(t, addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"), 5*time.Second) {
		t.Fatal("the pending connection was not shed")
	}
	waitStats(t, l, func(s Stats) bool { return s.ShedNoDescriptors == 1 && s.Open == 0 })

	// A waiting connection: it is closed, the new one served.
	idle := dial(t, addr, "")
	get(t, idle, "/")
	waitWaiting(t, l, 1)
	f.fail.Store(1)
	if res := get(t, dial(t, addr, ""), "/"); res.StatusCode != http.StatusOK {
		t.Fatalf("got %d", res.StatusCode)
	}
	if !closedByServer(idle, 5*time.Second) {
		t.Error("the idle connection was not shed")
	}
	if st := waitStats(t, l, func(s Stats) bool { return s.ShedNoDescriptors == 2 }); st.ShedLimit != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestEffectiveLimit(t *testing.T) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	nofile := int(rl.Cur)
	for _, tc := range []struct {
		name string
		cfg  Config
		want int
	}{
		{"below the descriptor limit", Config{Max: 10}, 10},
		{"no maximum", Config{}, nofile - DefaultReserve},
		{"above the descriptor limit", Config{Max: nofile * 2, Reserve: 10}, nofile - 10},
		{"reserve beyond the descriptor limit", Config{Max: 5, Reserve: nofile + 1}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := effectiveLimit(tc.cfg); got != tc.want {
				t.Errorf("limit %d, want %d (RLIMIT_NOFILE %d)", got, tc.want, nofile)
			}
		})
	}
}

func TestOwnSeesThroughTLS(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	c := &conn{Conn: a}
	if own(c) != c {
		t.Error("own(conn) is not the conn")
	}
	if own(tls.Server(c, &tls.Config{})) != c {
		t.Error("own(tls.Conn) does not unwrap")
	}
	if own(b) != nil {
		t.Error("own(foreign conn) is not nil")
	}
}

func TestTimeoutsValidate(t *testing.T) {
	ok := DefaultTimeouts()
	for _, tc := range []struct {
		name string
		set  func(*Timeouts)
		want string
	}{
		{"defaults", func(*Timeouts) {}, ""},
		{"no read header timeout", func(t *Timeouts) { t.ReadHeader = 0 }, "X_READ_HEADER_TIMEOUT must be positive"},
		{"negative read timeout", func(t *Timeouts) { t.Read = -time.Second }, "X_READ_TIMEOUT must be positive"},
		{"no write timeout", func(t *Timeouts) { t.Write = 0 }, "X_WRITE_TIMEOUT"},
		{"no idle timeout", func(t *Timeouts) { t.Idle = 0 }, "X_IDLE_TIMEOUT"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			to := ok
			tc.set(&to)
			err := to.Validate("X_")
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrTimeouts) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}
}
