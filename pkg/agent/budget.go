package agent

import (
	"sync"
	"time"
)

// outputMessagesPerSecond bounds the command_output messages an agent
// sends, summed over its commands (the server closes connections that send
// more than about 100 messages per second).
const outputMessagesPerSecond = 40

// rateBudget is a token bucket: up to burst messages at once, refilled at
// rate per second. The zero value allows nothing; it is safe for concurrent
// use.
type rateBudget struct {
	rate, burst float64

	mu     sync.Mutex
	tokens float64
	last   time.Time
}

// take spends one token if one is available at now.
func (b *rateBudget) take(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.last.IsZero() {
		b.tokens = b.burst
	} else {
		b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
