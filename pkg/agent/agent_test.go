package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/home-console/client-manager/pkg/agentproto"
)

func TestHelloWelcomeAndNormalClose(t *testing.T) {
	h := newFakeHub(t)
	welcomed := make(chan agentproto.Welcome, 1)
	_, cancel, done := startAgent(t, h, Config{
		Facts:       agentproto.Hello{Hostname: "box", Version: "1.2.3", Labels: map[string]string{"env": "test"}},
		Allowed:     []string{"uname", "uptime"},
		OnConnected: func(w agentproto.Welcome) { welcomed <- w },
	})
	c := h.next(t, 5*time.Second)
	if c.hello.Hostname != "box" || c.hello.Version != "1.2.3" || c.hello.Labels["env"] != "test" ||
		c.hello.OS == "" || c.hello.Arch == "" || strings.Join(c.hello.Allowed, ",") != "uname,uptime" {
		t.Errorf("hello = %+v", c.hello)
	}
	if w := <-welcomed; w.AgentID != "ag1" {
		t.Errorf("OnConnected got %+v", w)
	}
	cancel()
	if err := waitRun(t, done, 10*time.Second); err != nil {
		t.Errorf("Run after cancel = %v, want nil", err)
	}
	<-c.closed
	if c.closeStatus != websocket.StatusNormalClosure {
		t.Errorf("agent closed with %d, want 1000", c.closeStatus)
	}
}

func heartbeatCadence(t *testing.T, cfg Config) {
	h := newFakeHub(t)
	h.welcome.HeartbeatIntervalMS = 50
	startAgent(t, h, cfg)
	c := h.next(t, 5*time.Second)
	first := <-c.beats
	var last time.Time
	for range 10 {
		select {
		case last = <-c.beats:
		case <-time.After(5 * time.Second):
			t.Fatal("heartbeats stopped")
		}
	}
	// 10 intervals of 50ms; generous bounds for a loaded machine.
	if d := last.Sub(first); d < 350*time.Millisecond || d > 4*time.Second {
		t.Errorf("10 heartbeat intervals took %s, want about 500ms", d)
	}
}

func TestHeartbeatCadence(t *testing.T) {
	heartbeatCadence(t, Config{})
}

func TestHeartbeatCadenceWithGroup(t *testing.T) {
	g := NewHeartbeatGroup(10 * time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go g.Run(ctx)
	heartbeatCadence(t, Config{Heartbeats: g})
}

func TestCommandRoundTrip(t *testing.T) {
	h := newFakeHub(t)
	startAgent(t, h, Config{Allowed: []string{"echo"}})
	c := h.next(t, 5*time.Second)
	c.send(agentproto.TypeCommandRequest, agentproto.CommandRequest{CommandID: "c1", Command: "echo", Args: []string{"hello", "world"}, TimeoutMS: 5000})
	var ref agentproto.CommandRef
	c.expect(t, agentproto.TypeCommandAccepted, &ref)
	var out agentproto.CommandOutput
	c.expect(t, agentproto.TypeCommandOutput, &out)
	if ref.CommandID != "c1" || out.CommandID != "c1" || out.Stream != "stdout" || out.Seq != 0 || out.Data != "hello world\n" {
		t.Errorf("accepted %+v, output %+v", ref, out)
	}
	var res agentproto.CommandResult
	c.expect(t, agentproto.TypeCommandResult, &res)
	if res.Status != agentproto.ResultCompleted || res.ExitCode != 0 || res.Stdout != "hello world\n" ||
		res.Truncated || res.StartedAt.IsZero() || res.FinishedAt.Before(res.StartedAt) {
		t.Errorf("result %+v", res)
	}
}

func TestRejectedCommand(t *testing.T) {
	h := newFakeHub(t)
	startAgent(t, h, Config{Allowed: []string{"uname"}})
	c := h.next(t, 5*time.Second)
	c.send(agentproto.TypeCommandRequest, agentproto.CommandRequest{CommandID: "c1", Command: "rm", Args: []string{"-rf", "/"}})
	c.expect(t, agentproto.TypeCommandAccepted, nil)
	var res agentproto.CommandResult
	c.expect(t, agentproto.TypeCommandResult, &res)
	if res.Status != agentproto.ResultRejected || res.Error != `command "rm" is not in this agent's allow-list` {
		t.Errorf("result %+v", res)
	}
}

func TestTimeoutOverTheWireKillsProcessGroup(t *testing.T) {
	h := newFakeHub(t)
	startAgent(t, h, Config{Allowed: []string{"sh"}})
	c := h.next(t, 5*time.Second)
	c.send(agentproto.TypeCommandRequest, agentproto.CommandRequest{CommandID: "t1", Command: "sh",
		Args: []string{"-c", "sleep 30 & echo $!; sleep 30"}, TimeoutMS: 300})
	var res agentproto.CommandResult
	c.expect(t, agentproto.TypeCommandResult, &res, agentproto.TypeCommandAccepted, agentproto.TypeCommandOutput)
	if res.Status != agentproto.ResultTimedOut || res.ExitCode != -1 {
		t.Errorf("result %+v", res)
	}
	pid := 0
	for _, ch := range strings.TrimSpace(res.Stdout) {
		pid = pid*10 + int(ch-'0')
	}
	if pid <= 0 {
		t.Fatalf("no grandchild pid in %q", res.Stdout)
	}
	waitGone(t, pid)
}

func TestCancelCommand(t *testing.T) {
	h := newFakeHub(t)
	startAgent(t, h, Config{Allowed: []string{"sleep"}})
	c := h.next(t, 5*time.Second)
	c.send(agentproto.TypeCommandRequest, agentproto.CommandRequest{CommandID: "s1", Command: "sleep", Args: []string{"30"}, TimeoutMS: 60000})
	c.expect(t, agentproto.TypeCommandAccepted, nil)
	c.send(agentproto.TypeCommandCancel, agentproto.CommandRef{CommandID: "s1"})
	var res agentproto.CommandResult
	c.expect(t, agentproto.TypeCommandResult, &res)
	if res.Status != agentproto.ResultCancelled || res.ExitCode != -1 || res.FinishedAt.Sub(res.StartedAt) > 10*time.Second {
		t.Errorf("result %+v", res)
	}
}

func TestTruncatedOutputFitsTheServerLimits(t *testing.T) {
	h := newFakeHub(t)
	h.welcome.MaxOutputBytes = 3000
	h.welcome.MaxMessageBytes = 2000
	startAgent(t, h, Config{Allowed: []string{"seq"}})
	c := h.next(t, 5*time.Second)
	c.send(agentproto.TypeCommandRequest, agentproto.CommandRequest{CommandID: "h1", Command: "seq", Args: []string{"100000"}})
	var res agentproto.CommandResult
	env := c.expect(t, agentproto.TypeCommandResult, &res, agentproto.TypeCommandAccepted, agentproto.TypeCommandOutput)
	if !res.Truncated || res.Status != agentproto.ResultCompleted || len(res.Stdout) == 0 || len(res.Stdout) > 2000 {
		t.Errorf("status %s truncated %v stdout %d bytes", res.Status, res.Truncated, len(res.Stdout))
	}
	if len(env.Data) > 2000 {
		t.Errorf("result frame data is %d bytes, over the server's 2000", len(env.Data))
	}
}

// countingRunner counts runs; if release is set, each run waits for it to
// be closed (or for its context to end).
type countingRunner struct {
	runs    atomic.Int32
	release chan struct{}
}

func (r *countingRunner) Run(ctx context.Context, cmd Command, stdout, _ io.Writer) (int, error) {
	r.runs.Add(1)
	if r.release != nil {
		select {
		case <-r.release:
		case <-ctx.Done():
			return -1, context.Cause(ctx)
		}
	}
	io.WriteString(stdout, "ran "+cmd.ID)
	return 0, nil
}

func TestDuplicateRequestsRunOnce(t *testing.T) {
	h := newFakeHub(t)
	r := &countingRunner{release: make(chan struct{})}
	startAgent(t, h, Config{Allowed: []string{"x"}, Runner: r})
	c := h.next(t, 5*time.Second)
	req := agentproto.CommandRequest{CommandID: "d1", Command: "x"}
	c.send(agentproto.TypeCommandRequest, req)
	c.send(agentproto.TypeCommandRequest, req) // while running
	c.expect(t, agentproto.TypeCommandAccepted, nil)
	c.expect(t, agentproto.TypeCommandAccepted, nil)
	close(r.release)
	var first, again agentproto.CommandResult
	c.expect(t, agentproto.TypeCommandResult, &first, agentproto.TypeCommandOutput)
	c.send(agentproto.TypeCommandRequest, req) // after it finished
	// The second request's command_accepted goes out before the agent looks
	// the command up, so the command may finish first: that request then
	// gets the result again too. Either way the answer to this request
	// is the result after its command_accepted.
	c.expect(t, agentproto.TypeCommandAccepted, nil, agentproto.TypeCommandResult)
	c.expect(t, agentproto.TypeCommandResult, &again)
	if n := r.runs.Load(); n != 1 {
		t.Errorf("ran %d times, want 1", n)
	}
	if !again.StartedAt.Equal(first.StartedAt) || again.Stdout != "ran d1" {
		t.Errorf("re-sent result differs: %+v vs %+v", again, first)
	}
	c.quiet(t, 200*time.Millisecond, agentproto.TypeCommandResult)
}

func TestRunningCommandsReportedInHello(t *testing.T) {
	h := newFakeHub(t)
	r := &countingRunner{release: make(chan struct{})}
	startAgent(t, h, Config{Allowed: []string{"x"}, Runner: r})
	c := h.next(t, 5*time.Second)
	c.send(agentproto.TypeCommandRequest, agentproto.CommandRequest{CommandID: "long", Command: "x"})
	c.expect(t, agentproto.TypeCommandAccepted, nil)
	c.ws.Close(websocket.StatusGoingAway, "restarting")
	c2 := h.next(t, 5*time.Second)
	if strings.Join(c2.hello.Running, ",") != "long" {
		t.Errorf("hello.running = %v, want [long]", c2.hello.Running)
	}
	close(r.release)
	var res agentproto.CommandResult
	c2.expect(t, agentproto.TypeCommandResult, &res, agentproto.TypeCommandOutput)
	if res.CommandID != "long" || res.Status != agentproto.ResultCompleted {
		t.Errorf("result %+v", res)
	}
}

func TestResultResentAfterReconnectUntilAcked(t *testing.T) {
	h := newFakeHub(t)
	h.autoAck.Store(false)
	startAgent(t, h, Config{Allowed: []string{"x"}, Runner: &countingRunner{}})
	c := h.next(t, 5*time.Second)
	c.send(agentproto.TypeCommandRequest, agentproto.CommandRequest{CommandID: "r1", Command: "x"})
	var res agentproto.CommandResult
	c.expect(t, agentproto.TypeCommandResult, &res, agentproto.TypeCommandAccepted, agentproto.TypeCommandOutput)
	c.ws.Close(websocket.StatusGoingAway, "restarting") // no ack
	c = h.next(t, 5*time.Second)
	var again agentproto.CommandResult
	c.expect(t, agentproto.TypeCommandResult, &again)
	if again.CommandID != "r1" || !again.FinishedAt.Equal(res.FinishedAt) {
		t.Fatalf("re-sent %+v", again)
	}
	c.send(agentproto.TypeResultAck, agentproto.CommandRef{CommandID: "r1"})
	time.Sleep(100 * time.Millisecond) // let the ack be read before closing
	c.ws.Close(websocket.StatusGoingAway, "restarting")
	c = h.next(t, 5*time.Second)
	c.quiet(t, 300*time.Millisecond)
}

func TestUnackedResultResentOnTheSameConnection(t *testing.T) {
	h := newFakeHub(t)
	h.autoAck.Store(false)
	h.welcome.HeartbeatIntervalMS = 50
	h.welcome.LivenessTimeoutMS = 1000
	startAgent(t, h, Config{Allowed: []string{"x"}, Runner: &countingRunner{}})
	c := h.next(t, 5*time.Second)
	c.send(agentproto.TypeCommandRequest, agentproto.CommandRequest{CommandID: "u1", Command: "x"})
	c.expect(t, agentproto.TypeCommandResult, nil, agentproto.TypeCommandAccepted, agentproto.TypeCommandOutput)
	c.send(agentproto.TypeError, agentproto.Error{Code: "result_not_stored", Message: "re-send it later"})
	start := time.Now()
	var again agentproto.CommandResult
	c.expect(t, agentproto.TypeCommandResult, &again)
	if again.CommandID != "u1" || time.Since(start) < 500*time.Millisecond {
		t.Errorf("re-sent %q after %s; want u1 after about the 1s liveness timeout", again.CommandID, time.Since(start))
	}
	c.send(agentproto.TypeResultAck, agentproto.CommandRef{CommandID: "u1"})
	c.quiet(t, 1500*time.Millisecond)
}

func TestRevokedStopsReconnecting(t *testing.T) {
	h := newFakeHub(t)
	disconnected := make(chan error, 4)
	_, _, done := startAgent(t, h, Config{OnDisconnected: func(err error) { disconnected <- err }})
	c := h.next(t, 5*time.Second)
	c.ws.Close(agentproto.CloseRevoked, "credential revoked")
	err := waitRun(t, done, 5*time.Second)
	if !errors.Is(err, ErrRevoked) {
		t.Fatalf("Run = %v, want ErrRevoked", err)
	}
	if d := <-disconnected; !errors.Is(d, ErrRevoked) {
		t.Errorf("OnDisconnected got %v", d)
	}
	time.Sleep(300 * time.Millisecond) // several backoff periods
	if n := h.attempts.Load(); n != 1 {
		t.Errorf("%d connection attempts, want 1 (no reconnect after revocation)", n)
	}
}

func TestRevokedOnUpgradeStops(t *testing.T) {
	h := newFakeHub(t)
	h.beforeUpgrade = func(w http.ResponseWriter, _ *http.Request, _ int) bool {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		w.Write([]byte(`{"error":{"code":"revoked","message":"the agent credential was revoked"}}`))
		return true
	}
	_, _, done := startAgent(t, h, Config{})
	if err := waitRun(t, done, 5*time.Second); !errors.Is(err, ErrRevoked) || !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("Run = %v, want ErrRevoked and ErrUnauthorized", err)
	}
}

func TestUnauthorizedStops(t *testing.T) {
	h := newFakeHub(t)
	_, _, done := startAgent(t, h, Config{Credential: "ag1.wrong"})
	err := waitRun(t, done, 5*time.Second)
	var se *ServerError
	if !errors.Is(err, ErrUnauthorized) || !errors.As(err, &se) || se.Message != "unknown credential" {
		t.Fatalf("Run = %v, want ErrUnauthorized with the server's message", err)
	}
}

func TestBackoffOnTryAgainLater(t *testing.T) {
	h := newFakeHub(t)
	a, _, _ := startAgentWithRand(t, h, Config{MinBackoff: 50 * time.Millisecond, MaxBackoff: 400 * time.Millisecond},
		func(n int64) int64 { return n - 1 })
	_ = a
	var at []time.Time
	for range 5 {
		c := h.next(t, 5*time.Second)
		at = append(at, c.at)
		c.ws.Close(agentproto.CloseTryAgainLater, "over the connection limit")
	}
	// Largest draws: 50, 100, 200, 400ms.
	for i, want := range []time.Duration{50, 100, 200, 400} {
		if gap := at[i+1].Sub(at[i]); gap < want*time.Millisecond {
			t.Errorf("gap %d = %s, want at least %s", i, gap, want*time.Millisecond)
		}
	}
}

func TestTryAgainLaterWaitsAtLeastMinimum(t *testing.T) {
	h := newFakeHub(t)
	startAgentWithRand(t, h, Config{MinBackoff: 150 * time.Millisecond, MaxBackoff: time.Second},
		func(int64) int64 { return 0 })
	c := h.next(t, 5*time.Second)
	c.ws.Close(agentproto.CloseTryAgainLater, "busy")
	c2 := h.next(t, 5*time.Second)
	if gap := c2.at.Sub(c.at); gap < 150*time.Millisecond {
		t.Errorf("reconnected %s after 1013, want at least the 150ms minimum", gap)
	}
}

func TestRetryAfterOnUpgrade(t *testing.T) {
	h := newFakeHub(t)
	var firstAt atomic.Int64
	h.beforeUpgrade = func(w http.ResponseWriter, _ *http.Request, n int) bool {
		if n > 1 {
			return false
		}
		firstAt.Store(time.Now().UnixNano())
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusServiceUnavailable)
		return true
	}
	startAgent(t, h, Config{})
	c := h.next(t, 5*time.Second)
	if gap := c.at.Sub(time.Unix(0, firstAt.Load())); gap < time.Second {
		t.Errorf("reconnected %s after Retry-After: 1", gap)
	}
}

func TestSilentServerIsDropped(t *testing.T) {
	h := newFakeHub(t)
	h.welcome.HeartbeatIntervalMS = 50
	h.welcome.LivenessTimeoutMS = 200
	h.silent.Store(true)
	startAgent(t, h, Config{})
	c := h.next(t, 5*time.Second)
	select {
	case <-c.closed:
	case <-time.After(5 * time.Second):
		t.Fatal("the agent kept a connection to a silent server")
	}
	h.silent.Store(false)
	h.next(t, 5*time.Second)
}

func TestBadMessagesAreAnsweredNotFatal(t *testing.T) {
	h := newFakeHub(t)
	startAgent(t, h, Config{Allowed: []string{"x"}, Runner: &countingRunner{}})
	c := h.next(t, 5*time.Second)
	c.ws.Write(context.Background(), websocket.MessageText, []byte("not json"))
	c.send(agentproto.TypeCommandRequest, map[string]any{"command": "x"})
	c.send("future_message", map[string]any{"x": 1})
	var e agentproto.Error
	c.expect(t, agentproto.TypeError, &e)
	c.expect(t, agentproto.TypeError, &e)
	if e.Code != "invalid_message" || e.Ref != "s1" {
		t.Errorf("error %+v", e)
	}
	c.send(agentproto.TypeCommandRequest, agentproto.CommandRequest{CommandID: "ok", Command: "x"})
	c.expect(t, agentproto.TypeCommandResult, nil, agentproto.TypeCommandAccepted, agentproto.TypeCommandOutput)
}

func startAgentWithRand(t *testing.T, h *fakeHub, cfg Config, randN func(int64) int64) (*Agent, context.CancelFunc, <-chan error) {
	t.Helper()
	cfg.ServerURL = h.srv.URL
	cfg.Credential = testCredential
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	a.randN = randN
	ctx, cancel := context.WithCancel(context.Background())
	return a, cancel, runInBackground(t, a, ctx, cancel)
}

// TestCleanCloseReconnectsSoon has the server close with 1001 or 1012
// twice in a row, a second apart: with the default backoff, even at the
// largest random draw, the agent is back within 1.5 s of each close.
func TestCleanCloseReconnectsSoon(t *testing.T) {
	for _, code := range []websocket.StatusCode{websocket.StatusGoingAway, websocket.StatusServiceRestart} {
		for draw, randN := range map[string]func(int64) int64{"largest": func(n int64) int64 { return n - 1 }, "random": nil} {
			t.Run(fmt.Sprintf("%d/%s", code, draw), func(t *testing.T) {
				t.Parallel()
				h := newFakeHub(t)
				startAgentWithRand(t, h, Config{}, randN)
				c := h.next(t, 5*time.Second)
				for i := range 2 {
					time.Sleep(time.Second)
					closed := time.Now()
					c.ws.Close(code, "server restarting")
					c = h.next(t, 5*time.Second)
					back := c.at.Sub(closed)
					t.Logf("close %d: back after %s", i+1, back.Round(time.Millisecond))
					if back > 1500*time.Millisecond {
						t.Errorf("close %d with %d: agent back after %s, want at most 1.5s", i+1, code, back)
					}
				}
			})
		}
	}
}
