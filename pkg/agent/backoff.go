package agent

import (
	"errors"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/coder/websocket"

	"github.com/home-console/client-manager/pkg/agentproto"
)

// cleanCloseWindow bounds the wait before reconnecting after the server
// closed with 1001 (going away) or 1012 (service restart): it is coming
// back, so come back soon.
const cleanCloseWindow = time.Second

// cleanCloseRetries is how many failures to connect after a clean close
// still wait at most cleanCloseWindow: the server said it is coming back,
// and a restart can take longer than one short wait (about 10 s of
// retries on average). Past them the plain backoff takes over.
const cleanCloseRetries = 20

// backoff computes reconnect delays: exponential growth from min to max with
// full jitter, i.e. the n-th consecutive retry (from 0) waits a uniform
// time in [0, min(max, min*2^n)]. It is not safe for concurrent use.
type backoff struct {
	min, max time.Duration
	// stableAfter is how long a connection must have lasted for the next
	// retry to count from 0 again (clean closes reset the count anyway).
	stableAfter time.Duration
	attempt     int
	// soon counts the failures to connect left that still wait at most
	// cleanCloseWindow since the last clean close.
	soon int
	// randN returns a uniform value in [0, n); nil means rand.Int64N.
	randN func(n int64) int64
}

// delay returns the wait before reconnecting after a connection attempt
// that ended with err, having been established for lasted (zero if the
// handshake failed), and updates the count of consecutive retries:
//
//   - a Retry-After hint (429, 503) is waited, plus jitter (nextAtLeast);
//   - a clean close (1001, 1012) resets the count and waits a uniform time
//     in [0, min(min, cleanCloseWindow)], however long the connection
//     lasted; so do up to cleanCloseRetries failures to connect after it
//     (the server is still restarting), without counting them;
//   - 4001 (replaced) waits in [max/2, max];
//   - 1013, and 429 or 503 without a hint, wait at least min;
//   - anything else (a failure to connect, another close code) waits the
//     plain backoff.
//
// Except after a clean close, the count starts over first if the
// connection lasted stableAfter or longer.
func (b *backoff) delay(lasted time.Duration, err error) time.Duration {
	if lasted > 0 && lasted >= b.stableAfter {
		b.reset()
	}
	var se *ServerError
	isServerErr := errors.As(err, &se)
	switch code := closeStatus(err); {
	case isServerErr && se.RetryAfter > 0:
		return b.nextAtLeast(se.RetryAfter)
	case code == agentproto.CloseGoingAway, code == int(websocket.StatusServiceRestart):
		b.reset()
		b.soon = cleanCloseRetries
		return b.uniform(min(b.min, cleanCloseWindow))
	case code == agentproto.CloseReplaced:
		return b.longest()
	case code == agentproto.CloseTryAgainLater,
		isServerErr && (se.StatusCode == http.StatusTooManyRequests || se.StatusCode == http.StatusServiceUnavailable):
		return max(b.next(), b.min)
	case lasted == 0 && code < 0 && !isServerErr && b.soon > 0: // still not listening
		b.soon--
		return b.uniform(min(b.min, cleanCloseWindow))
	}
	b.soon = 0
	return b.next()
}

// ceiling is the upper bound of the current attempt's delay.
func (b *backoff) ceiling() time.Duration {
	c := b.min
	for i := 0; i < b.attempt && c < b.max; i++ {
		c *= 2
	}
	return min(c, b.max)
}

// uniform returns a value in [0, d].
func (b *backoff) uniform(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	f := b.randN
	if f == nil {
		f = rand.Int64N
	}
	return time.Duration(f(int64(d) + 1))
}

// next returns the delay before the next attempt and counts the attempt.
func (b *backoff) next() time.Duration {
	d := b.uniform(b.ceiling())
	b.attempt++
	return d
}

// nextAtLeast is next for a server that asked to wait at least hint: the
// delay is hint plus a jitter of up to min(hint, ceiling), so that agents
// told the same hint do not come back all at once.
func (b *backoff) nextAtLeast(hint time.Duration) time.Duration {
	d := hint + b.uniform(min(hint, b.ceiling()))
	b.attempt++
	return d
}

// longest returns a delay in [max/2, max], for conditions that retrying
// soon cannot fix (another connection took this agent's place).
func (b *backoff) longest() time.Duration {
	b.attempt++
	return b.max/2 + b.uniform(b.max-b.max/2)
}

// reset starts over from the first attempt.
func (b *backoff) reset() { b.attempt = 0 }
