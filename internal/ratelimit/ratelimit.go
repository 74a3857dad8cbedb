// Package ratelimit is the project's one token bucket: [Bucket] for a single
// shared limit (a connect rate, an agent's message budget) and [Limiter]
// for one bucket per key (a principal's name, a remote IP), in bounded
// memory.
package ratelimit

import (
	"math"
	"sync"
	"time"
)

// DefaultMaxKeys bounds the number of buckets a Limiter keeps when
// Limiter.MaxKeys is zero.
const DefaultMaxKeys = 16384

// Limiter is a set of token buckets, one per key, each refilled at rate
// tokens per second up to burst. A key seen for the first time starts with
// a full bucket. Its methods are safe for concurrent use.
//
// Memory is bounded: when a new key would exceed MaxKeys, buckets that
// have refilled completely (their callers were idle long enough that
// forgetting them changes nothing) are dropped first; if every bucket is
// still in use, arbitrary ones are dropped, which at worst hands those
// callers a fresh burst.
type Limiter struct {
	rate    float64
	burst   float64
	maxKeys int

	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

// spend takes one token if one is there and otherwise returns the time
// until one will be, at refill rate.
func (b *bucket) spend(rate float64) (time.Duration, bool) {
	if b.tokens >= 1 {
		b.tokens--
		return 0, true
	}
	return time.Duration((1 - b.tokens) / rate * float64(time.Second)), false
}

// Bucket is one token bucket: up to burst events at once, refilled at rate
// per second; it starts full. Its methods are safe for concurrent use.
type Bucket struct {
	rate, burst float64

	mu sync.Mutex
	b  bucket
}

// NewBucket returns a full bucket allowing rate (> 0) events per second
// with bursts of up to burst (at least 1).
func NewBucket(rate float64, burst int) *Bucket {
	bu := float64(max(burst, 1))
	return &Bucket{rate: rate, burst: bu, b: bucket{tokens: bu}}
}

// Allow spends one token at time now. When the bucket is empty it spends
// nothing and returns false with the time until a token is available.
func (b *Bucket) Allow(now time.Time) (time.Duration, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.b.last.IsZero() {
		b.b.last = now
	} else if elapsed := now.Sub(b.b.last); elapsed > 0 {
		b.b.tokens = min(b.burst, b.b.tokens+elapsed.Seconds()*b.rate)
		b.b.last = now
	}
	return b.b.spend(b.rate)
}

// New returns a Limiter allowing rate (> 0) events per second per key with
// bursts of up to burst (at least 1), keeping at most maxKeys buckets (0
// means DefaultMaxKeys).
func New(rate float64, burst, maxKeys int) *Limiter {
	if maxKeys <= 0 {
		maxKeys = DefaultMaxKeys
	}
	return &Limiter{
		rate:    rate,
		burst:   float64(max(burst, 1)),
		maxKeys: maxKeys,
		buckets: make(map[string]*bucket),
	}
}

// Allow spends one token of key's bucket at time now. When the bucket is
// empty it spends nothing and returns false with the time until a token
// is available.
func (l *Limiter) Allow(key string, now time.Time) (time.Duration, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.refill(key, now).spend(l.rate)
}

// Ready reports whether key's bucket holds a token at time now, without
// spending it; when it does not, it also returns the time until one is
// available. It suits limits on failures: check Ready before the attempt,
// and call Allow only when the attempt failed.
func (l *Limiter) Ready(key string, now time.Time) (time.Duration, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[key]
	if !ok {
		return 0, true
	}
	tokens := min(l.burst, b.tokens+max(now.Sub(b.last), 0).Seconds()*l.rate)
	if tokens >= 1 {
		return 0, true
	}
	return time.Duration((1 - tokens) / l.rate * float64(time.Second)), false
}

// refill returns key's bucket brought up to date at now, creating it if
// needed. l.mu must be held.
func (l *Limiter) refill(key string, now time.Time) *bucket {
	b, ok := l.buckets[key]
	if !ok {
		if len(l.buckets) >= l.maxKeys {
			l.evict(now)
		}
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[key] = b
		return b
	}
	if elapsed := now.Sub(b.last); elapsed > 0 {
		b.tokens = min(l.burst, b.tokens+elapsed.Seconds()*l.rate)
		b.last = now
	}
	return b
}

// evict makes room for at least one bucket. l.mu must be held.
func (l *Limiter) evict(now time.Time) {
	for key, b := range l.buckets {
		if b.tokens+now.Sub(b.last).Seconds()*l.rate >= l.burst {
			delete(l.buckets, key)
		}
	}
	// Everyone is busy: drop arbitrary buckets (map order is random), a
	// tenth of the table so this scan does not run again at once.
	for key := range l.buckets {
		if len(l.buckets) < l.maxKeys-l.maxKeys/10 {
			break
		}
		delete(l.buckets, key)
	}
}

// RetryAfter renders a wait as the value of a Retry-After header: whole
// seconds, at least 1.
func RetryAfter(wait time.Duration) int {
	return max(1, int(math.Ceil(wait.Seconds())))
}
