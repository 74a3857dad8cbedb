package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/home-console/client-manager/internal/syncbuf"
	"github.com/home-console/client-manager/pkg/agent/terminal"
	"github.com/home-console/client-manager/pkg/agentproto"
	"github.com/home-console/client-manager/pkg/agentstream"
)

// termStream is a terminal stream seen from the server, its output
// collected by a reader goroutine.
type termStream struct {
	st       *agentstream.Stream
	pid      int
	out      syncbuf.Buffer
	readDone chan error
}

// terminalAgent runs an agent allowing terminals and returns the hub
// connection and the agent's terminal state file.
func terminalAgent(t *testing.T) (*fakeHub, *hubConn, string) {
	h := streamHub(t)
	state := filepath.Join(t.TempDir(), "terminals.json")
	startAgent(t, h, Config{Terminal: shellTerminal(), TerminalStatePath: state, Allowed: []string{"true"}, Runner: instantRunner{}})
	return h, h.next(t, 5*time.Second), state
}

func openTerminal(t *testing.T, c *hubConn, cols, rows int) *termStream {
	t.Helper()
	st, opened, err := c.open(t, agentproto.StreamOpen{Kind: agentproto.StreamTerminal,
		Terminal: &agentproto.TerminalOpen{Cols: cols, Rows: rows, Term: "xterm"}})
	if err != nil {
		t.Fatalf("open terminal: %v", err)
	}
	if opened.PID <= 0 {
		t.Fatalf("opened %+v: no pid", opened)
	}
	ts := &termStream{st: st, pid: opened.PID, readDone: make(chan error, 1)}
	go func() {
		_, err := io.Copy(&ts.out, st)
		ts.readDone <- err
	}()
	t.Cleanup(func() { _ = st.Abort(agentproto.StreamErrorCancelled, "test over") })
	return ts
}

func (ts *termStream) send(t *testing.T, input string) {
	t.Helper()
	if _, err := ts.st.Write([]byte(input)); err != nil {
		t.Fatalf("type %q: %v", input, err)
	}
}

// expect waits until the output matches re (multi-line mode) and returns
// the submatches of the last match.
func (ts *termStream) expect(t *testing.T, re string, within time.Duration) []string {
	t.Helper()
	rx := regexp.MustCompile("(?m)" + re)
	for deadline := time.Now().Add(within); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if m := rx.FindAllStringSubmatch(ts.out.String(), -1); m != nil {
			return m[len(m)-1]
		}
	}
	t.Fatalf("output never matched %q within %s; got:\n%q", re, within, ts.out.String())
	return nil
}

// sessionProcs lists the live processes whose session id is sid.
func sessionProcs(sid int) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		f := bytes.Fields(b[bytes.LastIndexByte(b, ')')+1:])
		if len(f) > 3 && string(f[3]) == strconv.Itoa(sid) && f[0][0] != 'Z' {
			pids = append(pids, pid)
		}
	}
	return pids
}

func recordedPIDs(t *testing.T, state string) []int {
	b, err := os.ReadFile(state)
	if err != nil {
		return nil
	}
	var f terminalStateFile
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatalf("state file %q: %v", b, err)
	}
	var pids []int
	for _, id := range f.Sessions {
		pids = append(pids, id.PID)
	}
	return pids
}

func TestTerminalStream(t *testing.T) {
	_, c, state := terminalAgent(t)
	ts := openTerminal(t, c, 80, 24)
	if got := recordedPIDs(t, state); !slices.Equal(got, []int{ts.pid}) {
		t.Errorf("state file records %v, want [%d]", got, ts.pid)
	}
	ts.send(t, "echo h''i\n")
	ts.expect(t, `(^|\s)hi\r$`, 10*time.Second)

	c.send(agentproto.TypeTerminalResize, agentproto.TerminalResize{StreamID: ts.st.ID(), Cols: 100, Rows: 40})
	time.Sleep(100 * time.Millisecond) // the resize is applied apart from the input
	ts.send(t, "stty size\n")
	ts.expect(t, `(^|\s)40 100\r$`, 10*time.Second)

	ts.send(t, "sleep 100\n")
	time.Sleep(200 * time.Millisecond)
	ts.send(t, "\x03")
	ts.send(t, "echo do''ne\n")
	ts.expect(t, `(^|\s)done\r$`, 5*time.Second)

	ts.send(t, "sleep 100\n")
	time.Sleep(200 * time.Millisecond)
	c.send(agentproto.TypeTerminalSignal, agentproto.TerminalSignal{StreamID: ts.st.ID(), Signal: "SIGINT"})
	ts.send(t, "echo ag''ain\n")
	ts.expect(t, `(^|\s)again\r$`, 5*time.Second)

	ts.send(t, "exit 3\n")
	select {
	case err := <-ts.readDone:
		if err != nil {
			t.Fatalf("output ended with %v, want a clean close", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the stream did not end after exit")
	}
	pc, _ := ts.st.PeerClose()
	if pc.Code != "" || pc.ExitCode == nil || *pc.ExitCode != 3 {
		t.Errorf("close %+v, want exit code 3", pc)
	}
	_ = ts.st.CloseWrite(agentproto.StreamClose{})
	waitFor(t, func() bool { return len(recordedPIDs(t, state)) == 0 })
}

func TestTerminalSessionKilledWithItsStream(t *testing.T) {
	for _, tc := range []struct {
		name string
		end  func(h *fakeHub, c *hubConn, ts *termStream)
	}{
		{"aborted", func(_ *fakeHub, _ *hubConn, ts *termStream) {
			_ = ts.st.Abort(agentproto.StreamErrorCancelled, "operator left")
		}},
		{"server closed", func(_ *fakeHub, _ *hubConn, ts *termStream) { _ = ts.st.CloseWrite(agentproto.StreamClose{}) }},
		{"connection lost", func(_ *fakeHub, c *hubConn, _ *termStream) { c.ws.CloseNow() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, c, state := terminalAgent(t)
			ts := openTerminal(t, c, 0, 0)
			// a job that ignores the hangup, in a process group of its own
			ts.send(t, "set -m; (trap '' HUP; sleep 300) & (trap '' HUP; sleep 301) & echo st''arted\n")
			ts.expect(t, `(^|\s)started\r$`, 10*time.Second)
			waitFor(t, func() bool { return len(sessionProcs(ts.pid)) >= 3 })
			tc.end(h, c, ts)
			waitFor(t, func() bool { return len(sessionProcs(ts.pid)) == 0 })
			waitFor(t, func() bool { return len(recordedPIDs(t, state)) == 0 })
		})
	}
}

func TestTerminalLimitsAndBadRequest(t *testing.T) {
	_, c, _ := terminalAgent(t)
	_, _, err := c.open(t, agentproto.StreamOpen{Kind: agentproto.StreamTerminal,
		Terminal: &agentproto.TerminalOpen{Cols: 99999, Rows: 10}})
	if closeCode(err) != terminal.ErrBadRequest.Code() {
		t.Errorf("oversized terminal: %v", err)
	}
	for range terminal.DefaultMaxSessions {
		openTerminal(t, c, 0, 0)
	}
	_, _, err = c.open(t, agentproto.StreamOpen{Kind: agentproto.StreamTerminal})
	if closeCode(err) != terminal.ErrTooManySessions.Code() {
		t.Errorf("one terminal too many: %v", err)
	}
}

// TestOrphanSessionsKilledAtStart: a session recorded by a previous agent
// process (killed with -9, so it could not end its sessions) is killed when
// the next one starts; a recorded pid now used by another process is not.
func TestOrphanSessionsKilledAtStart(t *testing.T) {
	orphan := startSessionLeader(t)
	reused := startSessionLeader(t)
	state := filepath.Join(t.TempDir(), "terminals.json")
	wrong := reused
	wrong.Start++
	b, _ := json.Marshal(terminalStateFile{Sessions: []terminal.SessionID{orphan, wrong}})
	if err := os.WriteFile(state, b, 0o600); err != nil {
		t.Fatal(err)
	}
	h := streamHub(t)
	startAgent(t, h, Config{TerminalStatePath: state})
	h.next(t, 5*time.Second)
	if procs := sessionProcs(orphan.PID); len(procs) != 0 {
		t.Errorf("orphan session processes %v still alive after the agent started", procs)
	}
	if procs := sessionProcs(reused.PID); len(procs) < 2 {
		t.Errorf("the session whose start time differs was killed (left: %v)", procs)
	}
	if got := recordedPIDs(t, state); len(got) != 0 {
		t.Errorf("state file still records %v", got)
	}
}

// startSessionLeader starts a session leader ignoring SIGHUP with a child.
func startSessionLeader(t *testing.T) terminal.SessionID {
	t.Helper()
	m, err := terminal.New(terminal.Config{Enabled: true, Shell: []string{"/bin/sh", "-c", `trap "" HUP; sleep 300 & wait`}})
	if err != nil {
		t.Fatal(err)
	}
	s, err := m.Open(t.Context(), terminal.OpenRequest{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	waitFor(t, func() bool { return len(sessionProcs(s.PID())) >= 2 })
	id, ok := s.ID()
	if !ok {
		t.Fatal("no session id")
	}
	return id
}

// instantRunner finishes every command at once.
type instantRunner struct{}

func (instantRunner) Run(_ context.Context, _ Command, _, _ io.Writer) (int, error) { return 0, nil }

// commandLatencies sends n commands one after the other and returns how
// long each took from command_request to command_result.
func commandLatencies(t *testing.T, c *hubConn, n int, tag string) []time.Duration {
	t.Helper()
	lat := make([]time.Duration, 0, n)
	for i := range n {
		id := fmt.Sprintf("%s-%d", tag, i)
		start := time.Now()
		c.send(agentproto.TypeCommandRequest, agentproto.CommandRequest{CommandID: id, Command: "true"})
		var res agentproto.CommandResult
		for res.CommandID != id {
			c.expect(t, agentproto.TypeCommandResult, &res, agentproto.TypeCommandAccepted)
		}
		lat = append(lat, time.Since(start))
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	return lat
}

func percentile(sorted []time.Duration, p float64) time.Duration {
	return sorted[min(len(sorted)-1, int(float64(len(sorted))*p))]
}

// TestCommandsAnsweredWhileTerminalSaturates: a terminal streaming at full
// speed (yes) does not delay the command messages on the same connection.
func TestCommandsAnsweredWhileTerminalSaturates(t *testing.T) {
	_, c, _ := terminalAgent(t)
	const n = 200
	idle := commandLatencies(t, c, n, "idle")
	ts := &termStream{}
	st, _, err := c.open(t, agentproto.StreamOpen{Kind: agentproto.StreamTerminal})
	if err != nil {
		t.Fatal(err)
	}
	ts.st = st
	var counted countingWriter
	go func() { _, _ = io.Copy(&counted, st) }()
	ts.send(t, "yes 0123456789012345678901234567890123456789\n")
	waitFor(t, func() bool { return counted.n.Load() > 1<<20 })
	before, start := counted.n.Load(), time.Now()
	busy := commandLatencies(t, c, n, "busy")
	rate := float64(counted.n.Load()-before) / time.Since(start).Seconds() / (1 << 20)
	_ = st.Abort(agentproto.StreamErrorCancelled, "test over")
	t.Logf("command latency idle p50 %s p99 %s; terminal at %.1f MiB/s: p50 %s p99 %s",
		percentile(idle, 0.5), percentile(idle, 0.99), rate, percentile(busy, 0.5), percentile(busy, 0.99))
	if rate < 1 {
		t.Errorf("the terminal streamed only %.2f MiB/s during the measurement", rate)
	}
	if p99 := percentile(busy, 0.99); p99 > 500*time.Millisecond {
		t.Errorf("command p99 %s while the terminal streams", p99)
	}
}

type countingWriter struct{ n atomic.Int64 }

func (w *countingWriter) Write(p []byte) (int, error) { w.n.Add(int64(len(p))); return len(p), nil }

func TestTerminalIdleTimeout(t *testing.T) {
	h := streamHub(t)
	cfg := shellTerminal()
	cfg.IdleTimeout = 300 * time.Millisecond
	startAgent(t, h, Config{Terminal: cfg})
	ts := openTerminal(t, h.next(t, 5*time.Second), 0, 0)
	select {
	case err := <-ts.readDone:
		if closeCode(err) != terminal.ErrIdleTimeout.Code() {
			t.Errorf("idle session ended with %v, want %s", err, terminal.ErrIdleTimeout.Code())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("idle session not ended")
	}
	waitFor(t, func() bool { return len(sessionProcs(ts.pid)) == 0 })
}

func TestAgentStopAbortsStreamsWithShutdown(t *testing.T) {
	h := streamHub(t)
	_, cancel, done := startAgent(t, h, Config{Terminal: shellTerminal()})
	ts := openTerminal(t, h.next(t, 5*time.Second), 0, 0)
	cancel()
	waitRun(t, done, 10*time.Second)
	select {
	case err := <-ts.readDone:
		if closeCode(err) != agentproto.StreamErrorShutdown {
			t.Errorf("stream ended with %v, want %s", err, agentproto.StreamErrorShutdown)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("stream not ended")
	}
	if procs := sessionProcs(ts.pid); len(procs) != 0 {
		t.Errorf("session processes %v alive after Run returned", procs)
	}
}
