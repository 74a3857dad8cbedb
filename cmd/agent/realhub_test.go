package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"sync/atomic"
	"testing"
	"time"

	"github.com/home-console/client-manager/internal/hub"
	"github.com/home-console/client-manager/internal/hub/hubtest"
	"github.com/home-console/client-manager/internal/syncbuf"
	"github.com/home-console/client-manager/pkg/agent"
	"github.com/home-console/client-manager/pkg/agent/files"
	"github.com/home-console/client-manager/pkg/agent/terminal"
	"github.com/home-console/client-manager/pkg/agentproto"
)

// resultSink is a hub.CommandSink that hands over the results.
type resultSink struct{ results chan agentproto.CommandResult }

func (resultSink) Connected(context.Context, string, []string)              {}
func (resultSink) Accepted(context.Context, string, string)                 {}
func (resultSink) Output(context.Context, string, agentproto.CommandOutput) {}
func (s resultSink) Result(_ context.Context, _ string, r agentproto.CommandResult) error {
	s.results <- r
	return nil
}

// instant finishes every command at once.
type instant struct{}

func (instant) Run(context.Context, agent.Command, io.Writer, io.Writer) (int, error) { return 0, nil }

// realHub runs the real hub and an in-process SDK agent with a terminal and
// a files root connected to it.
func realHub(t *testing.T) (*hubtest.Env, string, string, resultSink) {
	if runtime.GOOS != "linux" {
		t.Skip("terminals need a PTY")
	}
	// commands are sent back to back, far above the default 100 messages
	// per second; the stream limits stay the defaults
	env := hubtest.Start(t, hub.Config{MessageRate: 1e6, MessageBurst: 1e6})
	sink := resultSink{results: make(chan agentproto.CommandResult, 16)}
	env.Hub.SetCommandSink(sink)
	id, cred := env.NewAgent(t, "streams")
	root := t.TempDir()
	// Wait for the agent to have the welcome: the hub marks an agent
	// online just before it queues the welcome, so a message sent at once
	// could go ahead of it.
	connected := make(chan struct{}, 16)
	a, err := agent.New(agent.Config{ServerURL: env.Server.URL, Credential: cred, Allowed: []string{"true"}, Runner: instant{},
		Terminal: terminal.Config{Enabled: true, Shell: []string{"/bin/sh"}}, Files: files.Config{Roots: []string{root}},
		Logger: env.Log, OnConnected: func(agentproto.Welcome) { connected <- struct{}{} }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-connected:
	case <-time.After(10 * time.Second):
		t.Fatal("agent not connected")
	}
	return env, id, root, sink
}

func send(t *testing.T, env *hubtest.Env, id, typ string, data any) {
	t.Helper()
	raw, _ := json.Marshal(data)
	if err := env.Hub.Send(id, agentproto.Envelope{Type: typ, ID: "t", Data: raw}); err != nil {
		t.Fatal(err)
	}
}

func TestRealHubTerminalAndFileRead(t *testing.T) {
	env, id, root, _ := realHub(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, opened, err := env.Hub.OpenStream(ctx, id, agentproto.StreamOpen{Kind: agentproto.StreamTerminal,
		Terminal: &agentproto.TerminalOpen{Cols: 80, Rows: 24}})
	if err != nil || opened.PID <= 0 {
		t.Fatalf("open terminal: %+v %v", opened, err)
	}
	var out syncbuf.Buffer
	readDone := make(chan error, 1)
	go func() { _, err := io.Copy(&out, st); readDone <- err }()
	send(t, env, id, agentproto.TypeTerminalResize, agentproto.TerminalResize{StreamID: st.ID(), Cols: 120, Rows: 30})
	time.Sleep(100 * time.Millisecond) // the resize is applied apart from the input
	if _, err := st.Write([]byte("echo h''i; stty size; exit 5\n")); err != nil {
		t.Fatal(err)
	}
	if err := <-readDone; err != nil {
		t.Fatalf("terminal output ended with %v", err)
	}
	pc, _ := st.PeerClose()
	if !regexp.MustCompile(`(?m)(^|\s)hi\r$`).MatchString(out.String()) || !regexp.MustCompile(`(?m)(^|\s)30 120\r$`).MatchString(out.String()) ||
		pc.ExitCode == nil || *pc.ExitCode != 5 {
		t.Errorf("terminal output %q, close %+v", out.String(), pc)
	}
	_ = st.CloseWrite(agentproto.StreamClose{})

	content := bytes.Repeat([]byte("0123456789abcdef"), 100000)
	if err := os.WriteFile(filepath.Join(root, "f"), content, 0o644); err != nil {
		t.Fatal(err)
	}
	st, _, err = env.Hub.OpenStream(ctx, id, agentproto.StreamOpen{Kind: agentproto.StreamFileRead,
		File: &agentproto.FileOpen{Path: filepath.Join(root, "f"), Offset: 7}})
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(st)
	sum := sha256.Sum256(content)
	pc, _ = st.PeerClose()
	if err != nil || !bytes.Equal(got, content[7:]) || pc.SHA256 != hex.EncodeToString(sum[:]) {
		t.Errorf("file read: %d bytes, %v, close %+v", len(got), err, pc)
	}
}

// TestRealHubCommandLatencyUnderSaturatedTerminal measures command round
// trips through the real hub, idle and while a terminal streams `yes` at
// full speed on the same connection.
func TestRealHubCommandLatencyUnderSaturatedTerminal(t *testing.T) {
	env, id, _, sink := realHub(t)
	const n = 200
	idle := roundTrips(t, env, id, sink, n, "idle")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	st, _, err := env.Hub.OpenStream(ctx, id, agentproto.StreamOpen{Kind: agentproto.StreamTerminal})
	if err != nil {
		t.Fatal(err)
	}
	var received atomic.Int64
	go func() {
		buf := make([]byte, 64<<10)
		for {
			m, err := st.Read(buf)
			received.Add(int64(m))
			if err != nil {
				return
			}
		}
	}()
	if _, err := st.Write([]byte("yes 0123456789012345678901234567890123456789\n")); err != nil {
		t.Fatal(err)
	}
	hubtest.Eventually(t, 10*time.Second, "terminal streaming", func() bool { return received.Load() > 1<<20 })
	before, start := received.Load(), time.Now()
	busy := roundTrips(t, env, id, sink, n, "busy")
	rate := float64(received.Load()-before) / time.Since(start).Seconds() / (1 << 20)
	_ = st.Abort(agentproto.StreamErrorCancelled, "test over")
	t.Logf("real hub: command round trip idle p50 %s p99 %s; terminal at %.1f MiB/s: p50 %s p99 %s",
		pct(idle, 0.5), pct(idle, 0.99), rate, pct(busy, 0.5), pct(busy, 0.99))
	if rate < 1 {
		t.Errorf("the terminal streamed only %.2f MiB/s", rate)
	}
	if p99 := pct(busy, 0.99); p99 > 500*time.Millisecond {
		t.Errorf("command p99 %s while the terminal streams", p99)
	}
}

func roundTrips(t *testing.T, env *hubtest.Env, id string, sink resultSink, n int, tag string) []time.Duration {
	t.Helper()
	lat := make([]time.Duration, 0, n)
	for i := range n {
		cmdID := fmt.Sprintf("%s-%d", tag, i)
		start := time.Now()
		send(t, env, id, agentproto.TypeCommandRequest, agentproto.CommandRequest{CommandID: cmdID, Command: "true", TimeoutMS: 5000})
		select {
		case r := <-sink.results:
			if r.CommandID != cmdID || r.Status != agentproto.ResultCompleted {
				t.Fatalf("result %+v for %s", r, cmdID)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no result for %s", cmdID)
		}
		lat = append(lat, time.Since(start))
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	return lat
}

func pct(sorted []time.Duration, p float64) time.Duration {
	return sorted[min(len(sorted)-1, int(float64(len(sorted))*p))]
}

// TestRealHubTinyWritesStayUnderTheStreamRate: a program writing one byte
// at a time does not make the agent exceed the hub's stream message rate
// (close 4005): the agent gathers its output into fewer frames.
func TestRealHubTinyWritesStayUnderTheStreamRate(t *testing.T) {
	env, id, _, _ := realHub(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, _, err := env.Hub.OpenStream(ctx, id, agentproto.StreamOpen{Kind: agentproto.StreamTerminal})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Write([]byte("while :; do printf x; done\n")); err != nil {
		t.Fatal(err)
	}
	readErr := make(chan error, 1)
	go func() { _, err := io.Copy(io.Discard, st); readErr <- err }()
	select {
	case err := <-readErr:
		t.Fatalf("terminal stream ended after %d bytes: %v", st.BytesIn(), err)
	case <-time.After(3 * time.Second):
	}
	t.Logf("%d bytes of one-byte writes in 3s", st.BytesIn())
	if st.BytesIn() < 10000 {
		t.Errorf("only %d bytes arrived", st.BytesIn())
	}
}
