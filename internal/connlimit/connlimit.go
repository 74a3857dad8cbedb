// Package connlimit bounds the connections an HTTP server holds open,
// how many ([Listener]) and for how long ([Timeouts]), so that a flood of
// idle or half-sent connections, or a process out of file descriptors,
// cannot make the server unreachable.
//
// A [Listener] wraps the server's listener and counts every connection it
// accepted until that connection is closed (hijacked ones included). At
// its limit, each new connection makes it shed one: the connection that
// has waited longest without a request being served (accepted or
// keep-alive idle, or still sending its request's header or body) is
// closed and the new one admitted; when every open connection is serving
// a request (an event stream, a long poll, an agent WebSocket) the new
// connection is closed instead. So an attacker's idle sockets make room
// for a health check, oldest first, while served ones are never cut.
//
// The limit is the configured maximum, but never more than the process's
// file descriptor limit (RLIMIT_NOFILE) minus a reserve for everything
// else the process opens (its store, logs, the plugin connection). If
// Accept still fails for lack of descriptors (EMFILE, ENFILE), the
// listener sheds the same way: it closes the oldest waiting connection,
// or, with none, accepts the pending connection with a descriptor it
// keeps spare for the purpose and closes it at once, so the accept loop
// neither spins nor stalls and the backlog keeps moving.
//
// [Listener.Configure] hooks the listener into an http.Server: its
// ConnState and ConnContext, and a wrapper of its Handler that marks a
// connection as serving once its request is read.
package connlimit

import (
	"container/list"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// DefaultReserve is the number of file descriptors kept for everything
// but connections when Config.Reserve is zero.
const DefaultReserve = 128

// logEvery bounds how often shedding is logged.
const logEvery = 10 * time.Second

// Reason says why a connection was shed.
type Reason string

// Reasons for shedding.
const (
	// ReasonLimit: a connection arrived while the limit was reached.
	ReasonLimit Reason = "limit"
	// ReasonNoDescriptors: Accept failed with EMFILE or ENFILE.
	ReasonNoDescriptors Reason = "no_descriptors"
)

// Config configures a [Listener].
type Config struct {
	// Max bounds the open connections; 0 means no bound but the
	// descriptor limit.
	Max int
	// Reserve is the number of file descriptors left for everything but
	// connections (DefaultReserve when 0): the limit is at most
	// RLIMIT_NOFILE minus Reserve.
	Reserve int
	// Log receives a warning when connections are shed (at most one per
	// 10 s, with the totals); nil discards it.
	Log *slog.Logger
}

// Stats is a snapshot of a [Listener]'s counters.
type Stats struct {
	// Open is the number of connections accepted and not yet closed.
	Open int
	// Limit is the effective limit.
	Limit int
	// ShedLimit and ShedNoDescriptors count the connections shed for
	// each [Reason].
	ShedLimit, ShedNoDescriptors uint64
}

// Listener is a net.Listener that bounds its open connections; see the
// package documentation. Accept must be called from one goroutine at a
// time (http.Server does); the other methods are safe for concurrent use.
type Listener struct {
	net.Listener
	limit int
	log   *slog.Logger
	spare *os.File // closed to accept and shed a connection when out of descriptors

	mu      sync.Mutex
	open    int
	waiting list.List // of *conn, longest waiting first
	lastLog time.Time

	shedLimit, shedNoFD atomic.Uint64
}

// New wraps inner.
func New(inner net.Listener, cfg Config) *Listener {
	l := &Listener{Listener: inner, limit: effectiveLimit(cfg), log: cfg.Log}
	l.spare, _ = os.Open(os.DevNull) // without it, shedding on EMFILE closes waiting connections only
	return l
}

// effectiveLimit is cfg.Max bounded by the descriptor limit minus the
// reserve, and at least 1.
func effectiveLimit(cfg Config) int {
	reserve := cfg.Reserve
	if reserve <= 0 {
		reserve = DefaultReserve
	}
	limit := cfg.Max
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err == nil && rl.Cur < 1<<31 {
		if fdLimit := int(rl.Cur) - reserve; limit <= 0 || fdLimit < limit {
			limit = fdLimit
		}
	}
	return max(limit, 1)
}

// Limit returns the effective limit on open connections.
func (l *Listener) Limit() int { return l.limit }

// Stats returns the current counters.
func (l *Listener) Stats() Stats {
	l.mu.Lock()
	open := l.open
	l.mu.Unlock()
	return Stats{Open: open, Limit: l.limit, ShedLimit: l.shedLimit.Load(), ShedNoDescriptors: l.shedNoFD.Load()}
}

// Accept returns the next connection, shedding as the package
// documentation says. Errors for lack of descriptors are handled, not
// returned.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		nc, err := l.Listener.Accept()
		if err != nil {
			if !isOutOfDescriptors(err) {
				return nil, err
			}
			l.relieve()
			continue
		}
		if c := l.admit(nc); c != nil {
			return c, nil
		}
	}
}

// Close closes the listener and its spare descriptor.
func (l *Listener) Close() error {
	if l.spare != nil {
		_ = l.spare.Close()
	}
	return l.Listener.Close()
}

// admit counts nc in, shedding the longest-waiting connection at the
// limit; it returns nil when nc itself was shed.
func (l *Listener) admit(nc net.Conn) *conn {
	l.mu.Lock()
	var victim *conn
	if l.open >= l.limit {
		victim = l.popWaitingLocked()
		if victim == nil {
			l.mu.Unlock()
			_ = nc.Close()
			l.shed(ReasonLimit)
			return nil
		}
	}
	c := &conn{Conn: nc, l: l, counted: true}
	l.open++
	c.elem = l.waiting.PushBack(c)
	l.mu.Unlock()
	if victim != nil {
		_ = victim.Conn.Close()
		l.shed(ReasonLimit)
	}
	return c
}

// relieve frees a descriptor after Accept failed for lack of them: it
// closes the longest-waiting connection or, with none, accepts the
// pending connection in the spare descriptor's place and closes it.
func (l *Listener) relieve() {
	l.mu.Lock()
	victim := l.popWaitingLocked()
	l.mu.Unlock()
	if victim != nil {
		_ = victim.Conn.Close()
		l.shed(ReasonNoDescriptors)
		// The descriptor is released once the connection's reader has
		// woken up; give it that moment before accepting again.
		time.Sleep(time.Millisecond)
		return
	}
	if l.spare == nil {
		time.Sleep(10 * time.Millisecond) // nothing to free: do not spin
		l.spare, _ = os.Open(os.DevNull)
		return
	}
	_ = l.spare.Close()
	if nc, err := l.Listener.Accept(); err == nil {
		_ = nc.Close()
		l.shed(ReasonNoDescriptors)
	}
	l.spare, _ = os.Open(os.DevNull)
}

// popWaitingLocked takes the longest-waiting connection off the count
// and returns it, or nil if every connection is serving.
func (l *Listener) popWaitingLocked() *conn {
	front := l.waiting.Front()
	if front == nil {
		return nil
	}
	c := front.Value.(*conn)
	l.releaseLocked(c)
	return c
}

// releaseLocked takes c off the count and the waiting list.
func (l *Listener) releaseLocked(c *conn) {
	if c.elem != nil {
		l.waiting.Remove(c.elem)
		c.elem = nil
	}
	if c.counted {
		c.counted = false
		l.open--
	}
}

// shed counts one shed connection and logs, at most once per logEvery.
func (l *Listener) shed(r Reason) {
	if r == ReasonLimit {
		l.shedLimit.Add(1)
	} else {
		l.shedNoFD.Add(1)
	}
	if l.log == nil {
		return
	}
	now := time.Now()
	l.mu.Lock()
	due := now.Sub(l.lastLog) >= logEvery
	if due {
		l.lastLog = now
	}
	open := l.open
	l.mu.Unlock()
	if due {
		l.log.Warn("connections shed", "reason", string(r), "open", open, "limit", l.limit,
			"shed_limit_total", l.shedLimit.Load(), "shed_no_descriptors_total", l.shedNoFD.Load())
	}
}

// isOutOfDescriptors reports whether err is EMFILE or ENFILE.
func isOutOfDescriptors(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)
}

// conn is an accepted connection, counted until it is closed.
type conn struct {
	net.Conn
	l    *Listener
	once sync.Once

	// Guarded by l.mu.
	counted bool          // included in l.open
	elem    *list.Element // in l.waiting while no request is being served
}

// Close implements net.Conn.
func (c *conn) Close() error {
	c.once.Do(func() {
		c.l.mu.Lock()
		c.l.releaseLocked(c)
		c.l.mu.Unlock()
	})
	return c.Conn.Close()
}

// setWaiting puts c at the back of the waiting list (waiting: no request
// is being served) or takes it off.
func (c *conn) setWaiting(waiting bool) {
	l := c.l
	l.mu.Lock()
	defer l.mu.Unlock()
	if !c.counted {
		return
	}
	if c.elem != nil {
		l.waiting.Remove(c.elem)
		c.elem = nil
	}
	if waiting {
		c.elem = l.waiting.PushBack(c)
	}
}

// Configure hooks l into srv: srv.ConnState and srv.ConnContext (any
// previous ConnContext still runs) track each connection's state, and
// srv.Handler is wrapped to mark a connection as serving once its request
// has been read (for a request with a body: once the handler has read it
// to the end). Call it before serving; srv.Handler must be set.
func (l *Listener) Configure(srv *http.Server) {
	prevCtx := srv.ConnContext
	srv.ConnContext = func(ctx context.Context, nc net.Conn) context.Context {
		if prevCtx != nil {
			ctx = prevCtx(ctx, nc)
		}
		if c := own(nc); c != nil {
			ctx = context.WithValue(ctx, connKey{}, c)
		}
		return ctx
	}
	srv.ConnState = func(nc net.Conn, st http.ConnState) {
		if st != http.StateIdle {
			return
		}
		if c := own(nc); c != nil {
			c.setWaiting(true)
		}
	}
	next := srv.Handler
	srv.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c, ok := r.Context().Value(connKey{}).(*conn); ok {
			if r.Body == nil || r.Body == http.NoBody {
				c.setWaiting(false)
			} else {
				// A copy: the server's own request keeps its body, whose
				// type net/http inspects after the handler.
				r = r.WithContext(r.Context())
				r.Body = &bodyReader{ReadCloser: r.Body, c: c}
			}
		}
		next.ServeHTTP(w, r)
	})
}

type connKey struct{}

// own returns the connection of l under nc (a TLS connection's too).
func own(nc net.Conn) *conn {
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	c, _ := nc.(*conn)
	return c
}

// bodyReader marks its connection as serving once the body has been read
// to the end.
type bodyReader struct {
	io.ReadCloser
	c    *conn
	done bool
}

// Read implements io.Reader.
func (b *bodyReader) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF && !b.done {
		b.done = true
		b.c.setWaiting(false)
	}
	return n, err
}
