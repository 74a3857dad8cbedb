package agent

import (
	"math/rand/v2"
	"time"
)

// backoff computes reconnect delays: exponential growth from min to max with
// full jitter, i.e. the n-th delay (from 0) is uniform in
// [0, min(max, min*2^n)]. It is not safe for concurrent use.
type backoff struct {
	min, max time.Duration
	attempt  int
	// randN returns a uniform value in [0, n); nil means rand.Int64N.
	randN func(n int64) int64
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

// reset starts over from the first attempt, after a connection that lasted.
func (b *backoff) reset() { b.attempt = 0 }
