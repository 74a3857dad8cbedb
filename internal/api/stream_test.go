package api_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/home-console/client-manager/internal/api"
	"github.com/home-console/client-manager/internal/events"
)

// drops records the streams the API dropped.
type drops struct {
	mu  sync.Mutex
	got []api.StreamDrop
}

func (d *drops) add(why api.StreamDrop) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.got = append(d.got, why)
}

func (d *drops) list() []api.StreamDrop {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]api.StreamDrop(nil), d.got...)
}

// streamFixture is the API with the given stream bounds, recording drops.
func streamFixture(t *testing.T, queue int, writeTimeout time.Duration) (*fixture, *drops) {
	t.Helper()
	d := &drops{}
	f := newFixtureWith(t, nil, func(s *api.Server) {
		s.StreamQueue, s.StreamWriteTimeout, s.StreamDropped = queue, writeTimeout, d.add
	})
	return f, d
}

// block is one Server-Sent Events block.
type block struct{ id, event, data string }

// readStream opens GET /api/events and sends every block read on the
// returned channel, closed when the stream ends.
func readStream(t *testing.T, base string) <-chan block {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/api/events", nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("GET /api/events: %v", err)
	}
	out := make(chan block, 1<<16)
	go func() {
		defer close(out)
		defer res.Body.Close()
		sc := bufio.NewScanner(res.Body)
		var b block
		for sc.Scan() {
			k, v, _ := strings.Cut(sc.Text(), ": ")
			switch k {
			case "":
				if b != (block{}) {
					out <- b
				}
				b = block{}
			case "id":
				b.id = v
			case "event":
				b.event = v
			case "data":
				b.data = v
			}
		}
	}()
	return out
}

// stalled opens GET /api/events with a 4 KiB receive buffer and never
// reads from it.
func stalled(t *testing.T, base string) net.Conn {
	t.Helper()
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		return c.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	nc, err := d.DialContext(t.Context(), "tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	if _, err := io.WriteString(nc, "GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	return nc
}

// output is an event of about 1 KiB.
func output(i int) events.Payload {
	return events.CommandOutput{AgentID: "agt_x", CommandID: "cmd_x", Seq: int64(i), Stream: "stdout", Data: strings.Repeat("o", 1000)}
}

// TestStreamDropsAConsumerThatFallsBehind: a burst of events far larger
// than the queue ends the stream with event: dropped, code queue_full.
func TestStreamDropsAConsumerThatFallsBehind(t *testing.T) {
	f, d := streamFixture(t, 4, time.Minute)
	blocks := readStream(t, f.base)
	for i := range 20000 {
		f.env.Bus.Publish(output(i))
	}
	var last block
	n := 0
	for b := range blocks {
		last = b
		n++
	}
	var data struct {
		Code   string `json:"code"`
		Reason string `json:"reason"`
		Missed int    `json:"missed"`
	}
	if last.event != "dropped" || json.Unmarshal([]byte(last.data), &data) != nil ||
		data.Code != string(api.DropQueueFull) || data.Reason == "" || data.Missed < 1 {
		t.Fatalf("after %d blocks the last is %+v, want event: dropped with code queue_full", n, last)
	}
	if got := d.list(); len(got) != 1 || got[0] != api.DropQueueFull {
		t.Errorf("drops %v, want [queue_full]", got)
	}
}

// TestStreamDropsAStalledConsumer: a consumer that stops reading is cut
// once a write has not completed within the write timeout, publishing
// never waits for it, and a consumer that reads gets every event.
func TestStreamDropsAStalledConsumer(t *testing.T) {
	const writeTimeout = 500 * time.Millisecond
	f, d := streamFixture(t, 1<<20, writeTimeout)
	nc := stalled(t, f.base)
	blocks := readStream(t, f.base)
	start := time.Now()
	var slowest time.Duration
	i := 0
	for ; len(d.list()) == 0 && time.Since(start) < 30*time.Second; i++ {
		t0 := time.Now()
		f.env.Bus.Publish(output(i))
		slowest = max(slowest, time.Since(t0))
		if i%100 == 99 {
			time.Sleep(10 * time.Millisecond)
		}
	}
	took := time.Since(start)
	if got := d.list(); len(got) != 1 || got[0] != api.DropWriteTimeout {
		t.Fatalf("drops %v after %v, want [write_timeout]", got, took)
	}
	t.Logf("stalled stream dropped after %v and %d events; slowest Publish %v", took, i, slowest)
	if slowest >= writeTimeout { // a Publish waiting for the stalled stream would wait this long
		t.Errorf("a Publish took %v", slowest)
	}
	_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.Copy(io.Discard, nc); err != nil {
		t.Errorf("the stalled stream was not closed: %v", err)
	}
	f.env.Bus.Publish(events.AgentConnected{AgentID: "agt_last"})
	checkEverything(t, blocks, i+1)
}

// checkEverything reads blocks until the n-th event and checks that none
// is missing.
func checkEverything(t *testing.T, blocks <-chan block, n int) {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for want := 1; want <= n; want++ {
		select {
		case b, ok := <-blocks:
			if !ok {
				t.Fatalf("the reading stream ended at event %d of %d", want, n)
			}
			if b.id != strconv.Itoa(want) {
				t.Fatalf("reading stream: block %+v, want id %d", b, want)
			}
		case <-timeout:
			t.Fatalf("the reading stream got %d of %d events", want-1, n)
		}
	}
}
