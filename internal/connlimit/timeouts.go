package connlimit

import (
	"errors"
	"fmt"
	"net/http"
	"time"
)

// Timeouts bound how long a connection may take over each part of an
// HTTP exchange. Responses that legitimately last longer (event streams,
// long polls, proxied streams) move their own deadlines (see
// internal/longlived); hijacked connections (WebSockets) are free of them.
type Timeouts struct {
	// ReadHeader bounds reading a request's header, from its first byte
	// (or from the end of the previous response on a kept-alive
	// connection, after Idle): a connection trickling its header is
	// closed after it.
	ReadHeader time.Duration
	// Read bounds reading a whole request, header and body: a body that
	// does not arrive in time is not served.
	Read time.Duration
	// Write bounds writing a response, from the end of its request's
	// header.
	Write time.Duration
	// Idle closes a kept-alive connection that sends no new request for
	// this long.
	Idle time.Duration
}

// DefaultTimeouts returns the timeouts both servers use by default: a
// header is a few hundred bytes that any client sends at once (5 s); a
// body is at most a few MiB (30 s is 35 KiB/s for the client manager's
// 1 MiB bound); a response is written within 30 s unless it is a stream;
// and a kept-alive connection may wait 60 s for its next request.
func DefaultTimeouts() Timeouts {
	return Timeouts{ReadHeader: 5 * time.Second, Read: 30 * time.Second, Write: 30 * time.Second, Idle: 60 * time.Second}
}

// ErrTimeouts is matched (errors.Is) by the errors of [Timeouts.Validate].
var ErrTimeouts = errors.New("timeouts")

// Validate checks that every timeout is positive (a zero one would let
// connections live forever); prefix starts the variable names in the
// error (e.g. "CLIENT_MANAGER_").
func (t Timeouts) Validate(prefix string) error {
	for _, v := range []struct {
		name string
		d    time.Duration
	}{{"READ_HEADER_TIMEOUT", t.ReadHeader}, {"READ_TIMEOUT", t.Read}, {"WRITE_TIMEOUT", t.Write}, {"IDLE_TIMEOUT", t.Idle}} {
		if v.d <= 0 {
			return fmt.Errorf("%w: %s%s must be positive, not %s", ErrTimeouts, prefix, v.name, v.d)
		}
	}
	return nil
}

// Apply sets srv's timeouts.
func (t Timeouts) Apply(srv *http.Server) {
	srv.ReadHeaderTimeout, srv.ReadTimeout, srv.WriteTimeout, srv.IdleTimeout = t.ReadHeader, t.Read, t.Write, t.Idle
}
