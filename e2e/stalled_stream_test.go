package e2e

import (
	"bufio"
	"bytes"
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
)

// eventLog is an event stream read as fast as it comes, with the time each
// event arrived.
type eventLog struct {
	mu       sync.Mutex
	arrived  map[uint64]time.Time // by event id
	first    uint64
	last     uint64
	names    map[string]int  // event name -> count
	finished map[string]bool // command ids of command.finished events
	gaps     int             // ids that did not follow the previous one
	ended    chan struct{}
}

// recordEvents opens GET url and records its events until the test ends.
func recordEvents(t *testing.T, url string) *eventLog {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %v", url, err)
	}
	l := &eventLog{arrived: map[uint64]time.Time{}, names: map[string]int{}, finished: map[string]bool{}, ended: make(chan struct{})}
	go func() {
		defer close(l.ended)
		defer res.Body.Close()
		sc := bufio.NewScanner(res.Body)
		sc.Buffer(make([]byte, 64<<10), 4<<20)
		for sc.Scan() {
			l.line(sc.Text(), time.Now())
		}
	}()
	return l
}

// line records one line of the stream.
func (l *eventLog) line(s string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if name, ok := strings.CutPrefix(s, "event: "); ok {
		l.names[name]++
		return
	}
	if data, ok := strings.CutPrefix(s, "data: "); ok {
		var e struct {
			Type      string `json:"type"`
			CommandID string `json:"command_id"`
		}
		if json.Unmarshal([]byte(data), &e) == nil && e.Type == "command.finished" {
			l.finished[e.CommandID] = true
		}
		return
	}
	v, ok := strings.CutPrefix(s, "id: ")
	if !ok {
		return
	}
	id, _ := strconv.ParseUint(v, 10, 64)
	if l.first == 0 {
		l.first = id
	} else if id != l.last+1 {
		l.gaps++
	}
	l.last = id
	l.arrived[id] = now
}

// snapshot returns the first and last ids, the gaps and the count of
// events named name.
func (l *eventLog) snapshot(name string) (first, last uint64, gaps, named int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.first, l.last, l.gaps, l.names[name]
}

// sawFinished reports whether command id's command.finished arrived.
func (l *eventLog) sawFinished(id string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.finished[id]
}

// waitFinished reports whether command id's command.finished arrives
// within timeout: events travel apart from the answer that finished it.
func (l *eventLog) waitFinished(id string, timeout time.Duration) bool {
	for deadline := time.Now().Add(timeout); ; time.Sleep(20 * time.Millisecond) {
		if l.sawFinished(id) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}

// arrival returns when event id arrived.
func (l *eventLog) arrival(id uint64) (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	at, ok := l.arrived[id]
	return at, ok
}

// stalledStream opens GET /api/events with a 4 KiB receive buffer and
// does not read from it until drained.
func stalledStream(t *testing.T, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		return c.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	if _, err := io.WriteString(nc, request("GET", "/api/events")); err != nil {
		t.Fatal(err)
	}
	return nc
}

// drainStalled reads a stalled stream to its end and returns how many bytes it
// held and the id of the last complete event in them; it fails the test
// if the server did not close it.
func drainStalled(t *testing.T, nc net.Conn) (int, uint64) {
	_ = nc.(*net.TCPConn).SetReadBuffer(1 << 20) // reading through 4 KiB would take seconds
	_ = nc.SetReadDeadline(time.Now().Add(30 * time.Second))
	data, err := io.ReadAll(nc)
	if err != nil && !strings.Contains(err.Error(), "reset") {
		t.Errorf("stalled stream not closed by the server: %v", err)
	}
	return len(data), lastCompleteID(data)
}

// lastCompleteID returns the id of the last complete event block of a
// stream's bytes (0 if none).
func lastCompleteID(data []byte) uint64 {
	complete := data[:max(0, bytes.LastIndex(data, []byte("\n\n")))]
	i := bytes.LastIndex(complete, []byte("\nid: "))
	if i < 0 {
		return 0
	}
	digits, _, _ := bytes.Cut(complete[i+len("\nid: "):], []byte("\n"))
	id, _ := strconv.ParseUint(string(digits), 10, 64)
	return id
}

// echoBatches sends batches of `echo <2 KB>` to every agent in ids, each
// waiting for its results, until stop is closed; it returns the number of
// commands accepted.
func echoBatches(base string, ids []string, stop <-chan struct{}) int {
	body := `{"client_ids":["` + strings.Join(ids, `","`) + `"],"command":"echo","args":["` + strings.Repeat("e", 2000) + `"]}`
	client := &http.Client{Timeout: 30 * time.Second}
	n := 0
	for {
		select {
		case <-stop:
			return n
		default:
		}
		res, err := client.Post(base+"/api/commands?wait=20s", "application/json", strings.NewReader(body))
		if err != nil {
			continue
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode == http.StatusAccepted {
			n += len(ids)
		}
	}
}

// Bounds of TestStalledEventStreamsAreDropped.
const (
	stalledStreams      = 50
	stalledWriteTimeout = 2 * time.Second
)

// TestStalledEventStreamsAreDropped opens 50 event streams that never read
// (4 KiB receive buffers) and one that reads, then makes 50 simulated
// agents run commands with 2 KB of output each: every stalled stream is
// dropped once a write to it has waited CLIENT_MANAGER_EVENT_WRITE_TIMEOUT,
// cm_event_streams_dropped_total counts 50, and the reading stream gets
// every event and stays open.
func TestStalledEventStreamsAreDropped(t *testing.T) {
	t.Parallel()
	port := freePort(t)
	startStandalone(t, port, t.TempDir(), "CLIENT_MANAGER_EVENT_WRITE_TIMEOUT="+stalledWriteTimeout.String(),
		"CLIENT_MANAGER_API_RATE=100000", "CLIENT_MANAGER_API_BURST=100000", "CLIENT_MANAGER_ENROLL_RATE=1000000")
	addr := "127.0.0.1:" + itoa(port)
	base := "http://" + addr
	startSimulator(t, base, createEnrollmentToken(t, base, stalledStreams), stalledStreams)
	ids := waitOnlineCount(t, base, stalledStreams, 60*time.Second)

	reader := recordEvents(t, base+"/api/events")
	stalled := make([]net.Conn, stalledStreams)
	for i := range stalled {
		stalled[i] = stalledStream(t, addr)
	}
	time.Sleep(time.Second) // every stream subscribed
	stop := make(chan struct{})
	commands := make(chan int, 1)
	began := time.Now()
	go func() { commands <- echoBatches(base, ids, stop) }()
	dropped := waitMetric(t, base, "cm_event_streams_dropped_total", stalledStreams, 90*time.Second)
	allDropped := time.Now()
	close(stop)
	n := <-commands
	t.Logf("%d commands; all %d stalled streams dropped %v after the first command", n, stalledStreams,
		allDropped.Sub(began).Round(time.Millisecond))
	checkStalledLag(t, reader, stalled, allDropped)
	checkReaderGotEverything(t, base, reader, ids[0])
	if got := waitMetric(t, base, "cm_event_streams_dropped_total", stalledStreams, time.Second); got != stalledStreams || dropped != stalledStreams {
		t.Errorf("cm_event_streams_dropped_total = %v, want %d", got, stalledStreams)
	}
}

// waitMetric polls /metrics until name reaches want (or timeout) and
// returns its last value.
func waitMetric(t *testing.T, base, name string, want float64, timeout time.Duration) float64 {
	t.Helper()
	v := -1.0
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if _, page := get(base + "/metrics"); page != "" {
			if v = metricValue(page, name); v >= want {
				return v
			}
		}
	}
	return v
}

// checkStalledLag drains every stalled stream: each must have been closed
// by the server, and the last event it got must have arrived on the
// reading stream at most the write timeout plus slack before the last
// stream was dropped: how far behind a stream may fall.
func checkStalledLag(t *testing.T, reader *eventLog, stalled []net.Conn, allDropped time.Time) {
	t.Helper()
	const slack = 5 * time.Second
	sizes, last := make([]int, len(stalled)), make([]uint64, len(stalled))
	var wg sync.WaitGroup
	for i, nc := range stalled {
		wg.Go(func() { sizes[i], last[i] = drainStalled(t, nc) })
	}
	wg.Wait()
	var worst time.Duration
	var bytesMax int
	for i, id := range last {
		bytesMax = max(bytesMax, sizes[i])
		at, ok := reader.arrival(id)
		if !ok {
			t.Errorf("a stalled stream's last event %d never reached the reading stream", id)
			continue
		}
		worst = max(worst, allDropped.Sub(at))
	}
	t.Logf("stalled streams: at most %d KiB held in socket buffers; dropped at most %v after their last delivered event was published",
		bytesMax>>10, worst.Round(time.Millisecond))
	if worst > stalledWriteTimeout+slack {
		t.Errorf("a stalled stream was dropped %v after its last delivered event, bound %v + %v", worst, stalledWriteTimeout, slack)
	}
}

// checkReaderGotEverything runs one more command and checks that the
// reading stream got it and every event before, without a gap or a drop.
func checkReaderGotEverything(t *testing.T, base string, reader *eventLog, agent string) {
	t.Helper()
	var cmd struct{ ID string }
	if code := postJSON(t, base+"/api/commands/"+agent, `{"command":"true"}`, &cmd); code != http.StatusOK {
		t.Fatalf("last command = %d", code)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if reader.sawFinished(cmd.ID) {
			first, last, gaps, drops := reader.snapshot("dropped")
			t.Logf("reading stream: events %d to %d, %d gaps, %d drops", first, last, gaps, drops)
			if gaps != 0 || drops != 0 {
				t.Errorf("the reading stream missed events: %d gaps, %d drops", gaps, drops)
			}
			return
		}
		select {
		case <-reader.ended:
			t.Fatal("the reading stream ended")
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the reading stream did not get the last command's command.finished")
		}
	}
}
