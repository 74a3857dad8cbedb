package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// sseEvent is one Server-Sent Events block.
type sseEvent struct{ Name, Data string }

// sseStream is an open GET /api/events.
type sseStream struct {
	url    string
	events chan sseEvent // every block read, in order
	ended  chan error    // receives nil when the server ended the stream
	cancel context.CancelFunc
}

// openStream opens an event stream at url and waits for its ": connected"
// comment. The stream is closed when the test ends.
func openStream(t *testing.T, url string) *sseStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d", url, res.StatusCode)
	}
	s := &sseStream{url: url, events: make(chan sseEvent, 1024), ended: make(chan error, 1), cancel: cancel}
	sc := bufio.NewScanner(res.Body)
	if !sc.Scan() || sc.Text() != ": connected" {
		t.Fatalf("GET %s: first line %q, want \": connected\"", url, sc.Text())
	}
	go func() {
		defer res.Body.Close()
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev != (sseEvent{}) {
					s.events <- ev
				}
				ev = sseEvent{}
			case strings.HasPrefix(line, "event: "):
				ev.Name = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				ev.Data = strings.TrimPrefix(line, "data: ")
			}
		}
		close(s.events)
		s.ended <- sc.Err()
	}()
	return s
}

// lastEvent waits until the server ends the stream and returns the last
// event block it sent.
func (s *sseStream) lastEvent(t *testing.T, timeout time.Duration) sseEvent {
	t.Helper()
	select {
	case err := <-s.ended:
		if err != nil {
			t.Errorf("stream %s broke instead of ending: %v", s.url, err)
		}
	case <-time.After(timeout):
		s.cancel()
		t.Fatalf("stream %s still open %s after the stop", s.url, timeout)
	}
	var last sseEvent
	for ev := range s.events {
		last = ev
	}
	return last
}

// checkShutdownEvent asserts that ev is the stream's documented last
// event: "shutdown" with a JSON reason.
func checkShutdownEvent(t *testing.T, ev sseEvent) {
	t.Helper()
	var data struct {
		Reason string `json:"reason"`
	}
	if ev.Name != "shutdown" || json.Unmarshal([]byte(ev.Data), &data) != nil || data.Reason == "" {
		t.Errorf("last event = %+v, want event: shutdown with data {\"reason\":...}", ev)
	}
}

// TestRestartWithOpenEventStreams restarts the client manager through the
// runtime's admin API while ten event streams are open, half of them
// through one-port mode: the restart answers within 1s with the plugin
// running again, and every stream ends with a shutdown event.
func TestRestartWithOpenEventStreams(t *testing.T) {
	t.Parallel()
	r := startRuntime(t, plugins(t, map[string]string{"client_manager": mounted(clientManager(), "/client-manager")}))
	p := r.waitState(cm, "running", 20*time.Second)

	var streams []*sseStream
	for i := range 10 {
		url := "http://" + p.HTTPAddress + "/api/events"
		if i%2 == 1 {
			url = r.admin + "/client-manager/api/events"
		}
		streams = append(streams, openStream(t, url))
	}
	began := time.Now()
	code, after := r.action(cm, "restart")
	took := time.Since(began)
	t.Logf("restart_ms=%d with %d open event streams", took.Milliseconds(), len(streams))
	if code != http.StatusOK || after.State != "running" || after.PID == p.PID {
		t.Fatalf("restart = %d %+v, want the plugin running with a new pid", code, after)
	}
	if took > time.Second {
		t.Errorf("restart with open event streams took %s, want at most 1s", took)
	}
	for _, s := range streams {
		checkShutdownEvent(t, s.lastEvent(t, time.Second))
	}
	if strings.Contains(r.logs.String(), "drain: context deadline exceeded") {
		t.Errorf("the client manager's drain timed out:\n%s", r.logs)
	}
}

// TestStandaloneSIGTERMWithOpenEventStreams stops a standalone client
// manager with SIGTERM while event streams are open: it exits 0 without
// a drain error, and the streams end with a shutdown event.
func TestStandaloneSIGTERMWithOpenEventStreams(t *testing.T) {
	t.Parallel()
	port := freePort(t)
	cmd := exec.Command(bin + "/client-manager")
	cmd.Dir = t.TempDir()
	cmd.Env = append(baseEnv(), "CLIENT_MANAGER_HOST=127.0.0.1", "CLIENT_MANAGER_PORT="+itoa(port),
		"CLIENT_MANAGER_DATA_DIR="+t.TempDir(), "CLIENT_MANAGER_DRAIN_TIMEOUT=10s")
	logs := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		if t.Failed() {
			t.Logf("client manager output:\n%s", logs)
		}
	})
	base := "http://127.0.0.1:" + itoa(port)
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if code, _ := get(base + "/health"); code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("standalone client manager never answered /health")
		}
	}
	var streams []*sseStream
	for range 10 {
		streams = append(streams, openStream(t, base+"/api/events"))
	}
	began := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		t.Logf("sigterm_exit_ms=%d with %d open event streams", time.Since(began).Milliseconds(), len(streams))
		var exit *exec.ExitError
		if errors.As(err, &exit) || err != nil {
			t.Fatalf("client manager exited with %v, want 0", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("client manager still running 15s after SIGTERM")
	}
	if out := logs.String(); strings.Contains(out, "drain:") || strings.Contains(out, "drain incomplete") {
		t.Errorf("drain error in the logs:\n%s", out)
	}
	for _, s := range streams {
		checkShutdownEvent(t, s.lastEvent(t, time.Second))
	}
}
