package agent

import (
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/home-console/client-manager/pkg/agentproto"
)

func TestBackoffCeilingAndJitterBounds(t *testing.T) {
	tests := []struct {
		min, max time.Duration
		attempt  int
		ceiling  time.Duration
	}{
		{time.Second, 30 * time.Second, 0, time.Second},
		{time.Second, 30 * time.Second, 1, 2 * time.Second},
		{time.Second, 30 * time.Second, 4, 16 * time.Second},
		{time.Second, 30 * time.Second, 5, 30 * time.Second},
		{time.Second, 30 * time.Second, 500, 30 * time.Second},
		{100 * time.Millisecond, 100 * time.Millisecond, 3, 100 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s-%s-%d", tt.min, tt.max, tt.attempt), func(t *testing.T) {
			low := backoff{min: tt.min, max: tt.max, attempt: tt.attempt, randN: func(int64) int64 { return 0 }}
			if d := low.next(); d != 0 {
				t.Errorf("smallest draw = %s, want 0 (full jitter)", d)
			}
			high := backoff{min: tt.min, max: tt.max, attempt: tt.attempt, randN: func(n int64) int64 { return n - 1 }}
			if d := high.next(); d != tt.ceiling {
				t.Errorf("largest draw = %s, want %s", d, tt.ceiling)
			}
			if high.attempt != tt.attempt+1 {
				t.Errorf("attempt = %d, want %d", high.attempt, tt.attempt+1)
			}
			random := backoff{min: tt.min, max: tt.max, attempt: tt.attempt}
			for range 1000 {
				random.attempt = tt.attempt
				if d := random.next(); d < 0 || d > tt.ceiling {
					t.Fatalf("draw %s outside [0, %s]", d, tt.ceiling)
				}
			}
		})
	}
}

func TestBackoffResetAndHints(t *testing.T) {
	b := backoff{min: time.Second, max: 8 * time.Second, randN: func(n int64) int64 { return n - 1 }}
	for _, want := range []time.Duration{1, 2, 4, 8, 8} {
		if d := b.next(); d != want*time.Second {
			t.Fatalf("next = %s, want %s", d, want*time.Second)
		}
	}
	b.reset()
	if d := b.next(); d != time.Second {
		t.Fatalf("after reset next = %s, want 1s", d)
	}
	b.reset()
	if d := b.nextAtLeast(5 * time.Second); d != 6*time.Second {
		t.Errorf("nextAtLeast(5s) at attempt 0 = %s, want 5s + at most the 1s ceiling", d)
	}
	if d := b.longest(); d < 4*time.Second || d > 8*time.Second {
		t.Errorf("longest = %s, want within [4s, 8s]", d)
	}
}

func closeErr(code int) error {
	return fmt.Errorf("closed: %w", closedError{websocket.CloseError{Code: websocket.StatusCode(code), Reason: "test"}})
}

// TestBackoffDecision checks the wait chosen after each kind of end, at
// the smallest and the largest random draw, and the retry count it leaves.
func TestBackoffDecision(t *testing.T) {
	const sec = time.Second
	refused := fmt.Errorf("connect: %w", errors.New("dial tcp: connection refused"))
	tests := []struct {
		name      string
		attempt   int // consecutive retries before
		lasted    time.Duration
		err       error
		lo, hi    time.Duration // the wait at the smallest and the largest draw
		attemptTo int
	}{
		{"failure to connect, first", 0, 0, refused, 0, sec, 1},
		{"failure to connect grows", 3, 0, refused, 0, 8 * sec, 4},
		{"failure to connect is capped", 9, 0, refused, 0, 30 * sec, 10},
		{"502 answer grows like a failure", 2, 0, &ServerError{StatusCode: http.StatusBadGateway}, 0, 4 * sec, 3},
		{"1001 after a short connection comes back soon", 4, 2 * sec, closeErr(agentproto.CloseGoingAway), 0, sec, 0},
		{"1001 after a long connection comes back soon", 4, time.Hour, closeErr(agentproto.CloseGoingAway), 0, sec, 0},
		{"1001 in the handshake comes back soon", 6, 0, closeErr(agentproto.CloseGoingAway), 0, sec, 0},
		{"1012 comes back soon", 5, 3 * sec, closeErr(int(websocket.StatusServiceRestart)), 0, sec, 0},
		{"1011 after a short connection grows", 3, 2 * sec, closeErr(agentproto.CloseInternal), 0, 8 * sec, 4},
		{"1011 after a stable connection starts over", 3, 30 * sec, closeErr(agentproto.CloseInternal), 0, sec, 1},
		{"4003 liveness grows", 2, sec, closeErr(agentproto.CloseLiveness), 0, 4 * sec, 3},
		{"1013 waits at least the minimum", 0, 0, closeErr(agentproto.CloseTryAgainLater), sec, sec, 1},
		{"503 without hint waits at least the minimum", 2, 0, &ServerError{StatusCode: http.StatusServiceUnavailable}, sec, 4 * sec, 3},
		{"429 with Retry-After waits it plus jitter", 0, 0, &ServerError{StatusCode: http.StatusTooManyRequests, RetryAfter: 7 * sec}, 7 * sec, 8 * sec, 1},
		{"503 with Retry-After waits it plus jitter", 3, 0, &ServerError{StatusCode: http.StatusServiceUnavailable, RetryAfter: 5 * sec}, 5 * sec, 10 * sec, 4},
		{"4001 replaced waits long", 0, 10 * sec, closeErr(agentproto.CloseReplaced), 15 * sec, 30 * sec, 1},
	}
	draws := map[string]func(int64) int64{"smallest": func(int64) int64 { return 0 }, "largest": func(n int64) int64 { return n - 1 }}
	for _, tt := range tests {
		for draw, randN := range draws {
			t.Run(tt.name+"/"+draw, func(t *testing.T) {
				b := backoff{min: sec, max: 30 * sec, stableAfter: 30 * sec, attempt: tt.attempt, randN: randN}
				want := tt.lo
				if draw == "largest" {
					want = tt.hi
				}
				if d := b.delay(tt.lasted, tt.err); d != want {
					t.Errorf("delay = %s, want %s", d, want)
				}
				if b.attempt != tt.attemptTo {
					t.Errorf("retry count %d -> %d, want %d", tt.attempt, b.attempt, tt.attemptTo)
				}
			})
		}
	}
}

// TestBackoffAfterCleanClose follows a server restart: a clean close, then
// failures to connect while the server is down, which keep waiting at most
// 1 s for cleanCloseRetries attempts and then grow from the minimum.
func TestBackoffAfterCleanClose(t *testing.T) {
	b := backoff{min: time.Second, max: 30 * time.Second, stableAfter: 30 * time.Second, attempt: 7,
		randN: func(n int64) int64 { return n - 1 }}
	refused := errors.New("connection refused")
	steps := []struct {
		lasted time.Duration
		err    error
		want   time.Duration
	}{
		{5 * time.Second, closeErr(agentproto.CloseGoingAway), time.Second},
	}
	for range cleanCloseRetries {
		steps = append(steps, struct {
			lasted time.Duration
			err    error
			want   time.Duration
		}{0, refused, time.Second})
	}
	steps = append(steps, []struct {
		lasted time.Duration
		err    error
		want   time.Duration
	}{
		{0, refused, time.Second},
		{0, refused, 2 * time.Second},
		{0, refused, 4 * time.Second},
		{time.Second, closeErr(agentproto.CloseGoingAway), time.Second},
		{0, refused, time.Second},
		{2 * time.Second, closeErr(agentproto.CloseInternal), time.Second},
		{0, refused, 2 * time.Second}, // another close ends the quick retries
	}...)
	for i, s := range steps {
		if d := b.delay(s.lasted, s.err); d != s.want {
			t.Errorf("step %d (%v): delay %s, want %s", i, s.err, d, s.want)
		}
	}
	short := backoff{min: 100 * time.Millisecond, max: time.Second, randN: func(n int64) int64 { return n - 1 }}
	if d := short.delay(time.Second, closeErr(agentproto.CloseGoingAway)); d != 100*time.Millisecond {
		t.Errorf("clean close with a 100ms minimum waits %s, want at most the minimum", d)
	}
	long := backoff{min: 5 * time.Second, max: time.Minute, randN: func(n int64) int64 { return n - 1 }}
	if d := long.delay(time.Second, closeErr(agentproto.CloseGoingAway)); d != time.Second {
		t.Errorf("clean close with a 5s minimum waits %s, want at most 1s", d)
	}
}

func TestParseRetryAfter(t *testing.T) {
	if d := parseRetryAfter("3"); d != 3*time.Second {
		t.Errorf("seconds: %s", d)
	}
	if d := parseRetryAfter(time.Now().Add(10 * time.Second).UTC().Format(http.TimeFormat)); d < 8*time.Second || d > 10*time.Second {
		t.Errorf("date: %s", d)
	}
	for _, v := range []string{"", "soon", "-4"} {
		if d := parseRetryAfter(v); d != 0 {
			t.Errorf("%q: %s, want 0", v, d)
		}
	}
}
