package pluginproto

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/home-console/client-manager/internal/syncbuf"
)

// syncBuffer captures output written from several goroutines.
type syncBuffer = syncbuf.Buffer

func TestLogWriterUnattachedWritesThrough(t *testing.T) {
	var fallback syncBuffer
	w := NewLogWriter(&fallback)
	fmt.Fprintln(w, "before serve")
	if got := fallback.String(); got != "before serve\n" {
		t.Fatalf("fallback got %q", got)
	}
}

func TestLogWriterForwardsAndFlushesInOrder(t *testing.T) {
	var fallback, stream syncBuffer
	w := NewLogWriter(&fallback)
	w.attach(&stream)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 100 {
				fmt.Fprintf(w, "g%d line %d\n", g, i)
			}
		}()
	}
	wg.Wait()
	for i := range 10 {
		fmt.Fprintf(w, "last %d\n", i)
	}
	if err := w.flush(context.Background(), markerLine("n1")); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(stream.String(), "\n"), "\n")
	if len(lines) != 411 {
		t.Fatalf("%d lines forwarded, want 411", len(lines))
	}
	for i := range 10 {
		if want := fmt.Sprintf("last %d", i); lines[400+i] != want {
			t.Errorf("line %d = %q, want %q", 400+i, lines[400+i], want)
		}
	}
	if lines[410] != strings.TrimSuffix(string(markerLine("n1")), "\n") {
		t.Errorf("last line %q, want the marker", lines[410])
	}
	if fallback.String() != "" {
		t.Errorf("fallback got %q while attached", fallback.String())
	}

	w.detach()
	fmt.Fprintln(w, "after serve")
	if got := fallback.String(); got != "after serve\n" {
		t.Errorf("fallback after detach got %q", got)
	}
	if err := w.flush(context.Background(), markerLine("n2")); !errors.Is(err, errNotAttached) {
		t.Errorf("flush after detach: %v", err)
	}
}

// TestLogWriterNeverBlocks attaches the writer to a pipe nobody reads (a
// plugin whose runtime is gone), then starts reading (a runtime
// re-attached).
func TestLogWriterNeverBlocks(t *testing.T) {
	r, pw := io.Pipe()
	w := NewLogWriter(io.Discard)
	w.attach(pw)
	const n = 3 * logQueueLines
	begin := time.Now()
	for i := range n {
		fmt.Fprintf(w, "line %d\n", i)
	}
	if d := time.Since(begin); d > 5*time.Second {
		t.Fatalf("%d writes took %s with nobody reading", n, d)
	}

	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	// Every line is either forwarded or counted, in order.
	got, dropped, next := 0, 0, 0
	timeout := time.After(10 * time.Second)
	for got+dropped < n {
		select {
		case l := <-lines:
			var i, k int
			if _, err := fmt.Sscanf(l, "pluginproto: %d log lines dropped", &k); err == nil {
				dropped += k
				next += k
			} else {
				if _, err := fmt.Sscanf(l, "line %d", &i); err != nil || i != next {
					t.Fatalf("got %q, want line %d", l, next)
				}
				got++
				next++
			}
		case <-timeout:
			t.Fatalf("%d lines forwarded and %d reported dropped, want %d in all", got, dropped, n)
		}
	}
	if got < logQueueLines || dropped == 0 {
		t.Errorf("%d lines forwarded, %d dropped; want at least the queue (%d) forwarded and some dropped", got, dropped, logQueueLines)
	}
}

func TestLogWriterBoundsQueuedBytes(t *testing.T) {
	r, pw := io.Pipe()
	defer r.Close()
	w := NewLogWriter(io.Discard)
	w.attach(pw)
	big := bytes.Repeat([]byte("x"), 256<<10)
	for range 10 {
		if n, err := w.Write(big); n != len(big) || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
	}
	if q := w.queued.Load(); q > logQueueBytes {
		t.Errorf("%d bytes queued, bound is %d", q, logQueueBytes)
	}
	if w.dropped.Load() == 0 {
		t.Error("nothing dropped")
	}
}

func TestLogWriterFlushHonoursContext(t *testing.T) {
	_, pw := io.Pipe() // never read: the forwarder blocks
	w := NewLogWriter(io.Discard)
	w.attach(pw)
	fmt.Fprintln(w, "stuck")
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := w.flush(ctx, markerLine("n")); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("flush = %v, want deadline exceeded", err)
	}
}
