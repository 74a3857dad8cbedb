package ratelimit

import (
	"strconv"
	"sync"
	"testing"
	"time"
)

func TestAllowBurstThenRate(t *testing.T) {
	l := New(10, 3, 0)
	t0 := time.Unix(1000, 0)
	for i := range 3 {
		if _, ok := l.Allow("a", t0); !ok {
			t.Fatalf("event %d of the burst refused", i)
		}
	}
	wait, ok := l.Allow("a", t0)
	if ok || wait != 100*time.Millisecond {
		t.Fatalf("4th event = %v %v, want refused with 100ms to wait", wait, ok)
	}
	if _, ok := l.Allow("b", t0); !ok {
		t.Fatal("another key shares a's bucket")
	}
	if _, ok := l.Allow("a", t0.Add(50*time.Millisecond)); ok {
		t.Fatal("allowed before a token refilled")
	}
	if _, ok := l.Allow("a", t0.Add(100*time.Millisecond)); !ok {
		t.Fatal("refused after a token refilled")
	}
	// A long idle time refills only up to the burst.
	later := t0.Add(time.Hour)
	for i := range 3 {
		if _, ok := l.Allow("a", later); !ok {
			t.Fatalf("event %d after idling refused", i)
		}
	}
	if _, ok := l.Allow("a", later); ok {
		t.Fatal("idle time refilled beyond the burst")
	}
}

func TestMemoryIsBounded(t *testing.T) {
	l := New(1, 2, 100)
	t0 := time.Unix(1000, 0)
	// Busy callers: every bucket is partly spent, so eviction must drop
	// some anyway.
	for i := range 1000 {
		l.Allow("busy-"+strconv.Itoa(i), t0)
		if n := len(l.buckets); n > 100 {
			t.Fatalf("%d buckets after %d keys, want at most 100", n, i+1)
		}
	}
	// Idle callers are dropped first: after they refilled, 100 new keys
	// evict them, not the new ones.
	later := t0.Add(time.Minute)
	for i := range 100 {
		l.Allow("new-"+strconv.Itoa(i), later)
	}
	if _, ok := l.buckets["new-0"]; !ok || len(l.buckets) > 100 {
		t.Fatalf("new-0 evicted or table too big (%d)", len(l.buckets))
	}
}

func TestConcurrentCallersShareOneBucket(t *testing.T) {
	l := New(0.001, 50, 0)
	now := time.Now()
	var wg sync.WaitGroup
	var mu sync.Mutex
	allowed := 0
	for range 8 {
		wg.Go(func() {
			for range 20 {
				if _, ok := l.Allow("k", now); ok {
					mu.Lock()
					allowed++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if allowed != 50 {
		t.Fatalf("%d events allowed, want the burst of 50", allowed)
	}
}

func TestRetryAfter(t *testing.T) {
	for wait, want := range map[time.Duration]int{0: 1, time.Millisecond: 1, time.Second: 1, 1001 * time.Millisecond: 2, time.Minute: 60} {
		if got := RetryAfter(wait); got != want {
			t.Errorf("RetryAfter(%s) = %d, want %d", wait, got, want)
		}
	}
}

func TestReadyDoesNotSpend(t *testing.T) {
	l := New(1, 2, 0)
	now := time.Unix(1000, 0)
	for i := 0; i < 5; i++ {
		if _, ok := l.Ready("ip", now); !ok {
			t.Fatalf("Ready %d on a fresh key = false", i)
		}
	}
	l.Allow("ip", now)
	l.Allow("ip", now)
	wait, ok := l.Ready("ip", now)
	if ok || wait != time.Second {
		t.Fatalf("Ready on an empty bucket = %v, %v; want 1s, false", wait, ok)
	}
	if _, ok := l.Ready("ip", now.Add(time.Second)); !ok {
		t.Fatal("Ready after the refill time = false")
	}
	if _, ok := l.Allow("ip", now.Add(time.Second)); !ok {
		t.Fatal("Ready spent the refilled token")
	}
}

func TestBucket(t *testing.T) {
	now := time.Unix(1000, 0)
	b := NewBucket(2, 3)
	for i := range 3 {
		if _, ok := b.Allow(now); !ok {
			t.Fatalf("event %d of the burst refused", i)
		}
	}
	wait, ok := b.Allow(now)
	if ok || wait != 500*time.Millisecond {
		t.Fatalf("after the burst: wait %v ok %v, want 500ms false", wait, ok)
	}
	if _, ok := b.Allow(now.Add(500 * time.Millisecond)); !ok {
		t.Fatal("refilled token refused")
	}
	if _, ok := b.Allow(now.Add(-time.Second)); ok {
		t.Fatal("a clock step backwards minted a token")
	}
}
