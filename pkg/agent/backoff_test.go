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

func TestRetryDelayByCause(t *testing.T) {
	closeErr := func(code int) error {
		return fmt.Errorf("closed: %w", websocket.CloseError{Code: websocket.StatusCode(code)})
	}
	zero := func(int64) int64 { return 0 }
	tests := []struct {
		name     string
		err      error
		min, max time.Duration
	}{
		{"plain failure uses full jitter", errors.New("dial refused"), 0, 0},
		{"going away uses full jitter", closeErr(agentproto.CloseGoingAway), 0, 0},
		{"try again later waits the minimum", closeErr(agentproto.CloseTryAgainLater), time.Second, time.Second},
		{"503 waits the minimum", &ServerError{StatusCode: http.StatusServiceUnavailable}, time.Second, time.Second},
		{"429 with Retry-After waits it", &ServerError{StatusCode: http.StatusTooManyRequests, RetryAfter: 7 * time.Second}, 7 * time.Second, 7 * time.Second},
		{"replaced waits long", closeErr(agentproto.CloseReplaced), 15 * time.Second, 15 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := backoff{min: time.Second, max: 30 * time.Second, randN: zero}
			if d := retryDelay(&b, tt.err); d < tt.min || d > tt.max {
				t.Errorf("delay = %s, want within [%s, %s]", d, tt.min, tt.max)
			}
		})
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
