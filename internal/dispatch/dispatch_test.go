package dispatch_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/home-console/client-manager/internal/dispatch"
	"github.com/home-console/client-manager/internal/drain"
	"github.com/home-console/client-manager/internal/fleet"
	"github.com/home-console/client-manager/internal/hub"
	"github.com/home-console/client-manager/internal/hub/hubtest"
	"github.com/home-console/client-manager/pkg/agentproto"
)

var (
	_ hub.CommandSink = (*dispatch.Service)(nil)
	_ dispatch.Sender = (*hub.Hub)(nil)
)

type fixture struct {
	env   *hubtest.Env
	store fleet.Store // the Service's: env.Store unless a test wraps it
	svc   *dispatch.Service
	stop  func() // ends svc's loop
}

// start runs a hub with a dispatch Service (its loop included) until the
// test ends.
func start(t *testing.T, cfg dispatch.Config) *fixture {
	t.Helper()
	f := &fixture{env: hubtest.Start(t, hub.Config{})}
	f.store = f.env.Store
	f.restart(t, cfg)
	return f
}

// restart stops the running Service, if any, and replaces it with a new
// one on the same store, as after a restart of the client manager: the
// new one recovers, takes the hub's agents and runs its loop until the
// test ends.
func (f *fixture) restart(t *testing.T, cfg dispatch.Config) {
	t.Helper()
	if f.stop != nil {
		f.stop()
	}
	if cfg.TickInterval == 0 {
		cfg.TickInterval = 20 * time.Millisecond
	}
	f.svc = dispatch.New(f.store, f.env.Hub, f.env.Bus, f.env.Log, cfg)
	f.env.Hub.SetCommandSink(f.svc)
	if err := f.svc.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.svc.Run(ctx)
	}()
	var once sync.Once
	f.stop = func() {
		once.Do(func() {
			cancel()
			<-done
		})
	}
	t.Cleanup(f.stop)
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func (f *fixture) submit(t *testing.T, req dispatch.Request) fleet.Command {
	t.Helper()
	cmd, err := f.svc.Submit(context.Background(), req)
	if err != nil {
		t.Fatalf("submit: %v", err)
	}
	return cmd
}

func (f *fixture) wait(t *testing.T, id string) fleet.Command {
	t.Helper()
	cmd, err := f.svc.Wait(ctxT(t, 10*time.Second), id)
	if err != nil {
		t.Fatalf("wait: %v", err)
	}
	if !cmd.Status.Terminal() {
		t.Fatalf("command %s still %s", id, cmd.Status)
	}
	return cmd
}

func send(t *testing.T, a *hubtest.Agent, typ, id string, data any) {
	t.Helper()
	if err := a.Send(ctxT(t, 5*time.Second), typ, id, data); err != nil {
		t.Fatalf("send %s: %v", typ, err)
	}
}

func TestCommandRoundTrip(t *testing.T) {
	f := start(t, dispatch.Config{})
	id, cred := f.env.NewAgent(t, "a")
	a := f.env.Connect(t, cred)

	cmd := f.submit(t, dispatch.Request{AgentID: id, Command: "echo", Args: []string{"hi"}, Timeout: 5 * time.Second, RequestedBy: "op"})
	if !strings.HasPrefix(cmd.ID, "cmd_") || cmd.Status != fleet.StatusDispatched || cmd.Attempts != 1 {
		t.Fatalf("submitted %+v", cmd)
	}
	var req agentproto.CommandRequest
	a.Expect(t, agentproto.TypeCommandRequest, &req)
	if req.CommandID != cmd.ID || req.Command != "echo" || len(req.Args) != 1 || req.Args[0] != "hi" || req.TimeoutMS != 5000 {
		t.Fatalf("request %+v", req)
	}
	send(t, a, agentproto.TypeCommandAccepted, "", agentproto.CommandRef{CommandID: cmd.ID})
	hubtest.Eventually(t, 5*time.Second, "running", func() bool {
		c, err := f.env.Store.Command(context.Background(), cmd.ID)
		return err == nil && c.Status == fleet.StatusRunning
	})
	send(t, a, agentproto.TypeCommandOutput, "", agentproto.CommandOutput{CommandID: cmd.ID, Stream: agentproto.StreamStdout, Data: "hi\n"})
	send(t, a, agentproto.TypeCommandResult, "r1", agentproto.CommandResult{
		CommandID: cmd.ID, Status: agentproto.ResultCompleted, ExitCode: 0, Stdout: "hi\n",
	})
	var ack agentproto.CommandRef
	if env := a.Expect(t, agentproto.TypeResultAck, &ack); ack.CommandID != cmd.ID || env.ID != "r1" {
		t.Fatalf("ack %+v", env)
	}
	got := f.wait(t, cmd.ID)
	if got.Status != fleet.StatusCompleted || got.ExitCode == nil || *got.ExitCode != 0 || got.Stdout != "hi\n" || got.RequestedBy != "op" {
		t.Fatalf("finished %+v", got)
	}
}

func TestWaitReturnsLiveStateWhenContextEnds(t *testing.T) {
	f := start(t, dispatch.Config{})
	id, cred := f.env.NewAgent(t, "a")
	f.env.Connect(t, cred)
	cmd := f.submit(t, dispatch.Request{AgentID: id, Command: "sleep"})
	got, err := f.svc.Wait(ctxT(t, 100*time.Millisecond), cmd.ID)
	if err != nil || got.Status != fleet.StatusDispatched {
		t.Fatalf("wait: %+v, %v", got, err)
	}
	if _, err := f.svc.Wait(ctxT(t, time.Second), "cmd_nope"); !errors.Is(err, dispatch.ErrUnknownCommand) {
		t.Fatalf("wait unknown: %v", err)
	}
}

// TestWaitEndsWhenTheDrainBegins: a wait whose context carries the
// server's drain notice returns the live state as soon as the drain
// begins, long before its own deadline.
func TestWaitEndsWhenTheDrainBegins(t *testing.T) {
	f := start(t, dispatch.Config{})
	id, cred := f.env.NewAgent(t, "a")
	f.env.Connect(t, cred)
	cmd := f.submit(t, dispatch.Request{AgentID: id, Command: "sleep"})
	notice := drain.New()
	time.AfterFunc(50*time.Millisecond, func() { notice.Begin("test") })
	began := time.Now()
	got, err := f.svc.Wait(notice.Attach(ctxT(t, 30*time.Second)), cmd.ID)
	if err != nil || got.Status != fleet.StatusDispatched {
		t.Fatalf("wait: %+v, %v", got, err)
	}
	if took := time.Since(began); took > 5*time.Second {
		t.Fatalf("wait returned %s after it began, not at the drain", took)
	}
}

func TestSubmitRejects(t *testing.T) {
	f := start(t, dispatch.Config{})
	ctx := context.Background()
	offline, _ := f.env.NewAgent(t, "offline")
	revoked, _ := f.env.NewAgent(t, "revoked")
	if err := f.env.Enroll.Revoke(ctx, revoked, "test"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		req  dispatch.Request
		want error
	}{
		{"offline", dispatch.Request{AgentID: offline, Command: "ls"}, fleet.ErrAgentOffline},
		{"unknown", dispatch.Request{AgentID: "agt_nope", Command: "ls"}, fleet.ErrUnknownAgent},
		{"revoked", dispatch.Request{AgentID: revoked, Command: "ls", QueueIfOffline: true}, fleet.ErrAgentRevoked},
		{"empty command", dispatch.Request{AgentID: offline, Command: " "}, dispatch.ErrInvalidRequest},
		{"NUL byte", dispatch.Request{AgentID: offline, Command: "ls", Args: []string{"a\x00b"}}, dispatch.ErrInvalidRequest},
		{"too many args", dispatch.Request{AgentID: offline, Command: "ls", Args: make([]string, 300)}, dispatch.ErrInvalidRequest},
		{"args too large", dispatch.Request{AgentID: offline, Command: "ls", Args: []string{strings.Repeat("a", 70<<10)}}, dispatch.ErrInvalidRequest},
		{"timeout too long", dispatch.Request{AgentID: offline, Command: "ls", Timeout: 2 * time.Hour}, dispatch.ErrInvalidRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := f.svc.Submit(ctx, tc.req); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
	if _, total, _ := f.env.Store.ListCommands(ctx, fleet.CommandFilter{}); total != 0 {
		t.Fatalf("%d commands stored by rejected requests", total)
	}
}

func TestQueuedCommandDeliveredOnConnect(t *testing.T) {
	f := start(t, dispatch.Config{})
	id, cred := f.env.NewAgent(t, "a")
	cmd := f.submit(t, dispatch.Request{AgentID: id, Command: "uptime", QueueIfOffline: true, TTL: time.Minute})
	if cmd.Status != fleet.StatusQueued || cmd.ExpiresAt.IsZero() {
		t.Fatalf("submitted %+v", cmd)
	}
	a := f.env.Connect(t, cred)
	var req agentproto.CommandRequest
	a.Expect(t, agentproto.TypeCommandRequest, &req)
	if req.CommandID != cmd.ID {
		t.Fatalf("delivered %+v", req)
	}
	got, err := f.env.Store.Command(context.Background(), cmd.ID)
	if err != nil || got.Status != fleet.StatusDispatched || got.Attempts != 1 {
		t.Fatalf("stored %+v, %v", got, err)
	}
}

func TestQueuedCommandExpires(t *testing.T) {
	f := start(t, dispatch.Config{})
	id, _ := f.env.NewAgent(t, "a")
	cmd := f.submit(t, dispatch.Request{AgentID: id, Command: "uptime", QueueIfOffline: true, TTL: 100 * time.Millisecond})
	got := f.wait(t, cmd.ID)
	if got.Status != fleet.StatusExpired || got.Error == "" {
		t.Fatalf("finished %+v", got)
	}
}

func TestRedeliveryOnReconnect(t *testing.T) {
	f := start(t, dispatch.Config{})
	id, cred := f.env.NewAgent(t, "a")
	a := f.env.Connect(t, cred)
	first := f.submit(t, dispatch.Request{AgentID: id, Command: "a"})
	second := f.submit(t, dispatch.Request{AgentID: id, Command: "b"})
	a.Expect(t, agentproto.TypeCommandRequest, nil)
	a.Expect(t, agentproto.TypeCommandRequest, nil)
	_ = a.Conn.CloseNow()
	hubtest.Eventually(t, 5*time.Second, "offline", func() bool { return !f.env.Hub.Online(id) })

	// The agent still runs the first; only the second comes again.
	b := f.env.Connect(t, cred, first.ID)
	var req agentproto.CommandRequest
	b.Expect(t, agentproto.TypeCommandRequest, &req)
	if req.CommandID != second.ID {
		t.Fatalf("re-delivered %s, want %s", req.CommandID, second.ID)
	}
	got, _ := f.env.Store.Command(context.Background(), second.ID)
	if got.Attempts != 2 {
		t.Fatalf("attempts %d", got.Attempts)
	}
	if got, _ := f.env.Store.Command(context.Background(), first.ID); got.Status != fleet.StatusRunning {
		t.Fatalf("reported-running command is %s", got.Status)
	}
}

func TestCancel(t *testing.T) {
	f := start(t, dispatch.Config{CancelGrace: 300 * time.Millisecond})
	ctx := context.Background()
	id, cred := f.env.NewAgent(t, "a")
	a := f.env.Connect(t, cred)

	t.Run("running, confirmed by the agent", func(t *testing.T) {
		cmd := f.submit(t, dispatch.Request{AgentID: id, Command: "sleep"})
		a.Expect(t, agentproto.TypeCommandRequest, nil)
		send(t, a, agentproto.TypeCommandAccepted, "", agentproto.CommandRef{CommandID: cmd.ID})
		got, err := f.svc.Cancel(ctx, cmd.ID, "op")
		if err != nil || got.Status.Terminal() {
			t.Fatalf("cancel: %+v, %v", got, err)
		}
		var ref agentproto.CommandRef
		a.Expect(t, agentproto.TypeCommandCancel, &ref)
		if ref.CommandID != cmd.ID {
			t.Fatalf("cancel for %s", ref.CommandID)
		}
		send(t, a, agentproto.TypeCommandResult, "", agentproto.CommandResult{CommandID: cmd.ID, Status: agentproto.ResultCancelled, ExitCode: -1})
		a.Expect(t, agentproto.TypeResultAck, nil)
		if got := f.wait(t, cmd.ID); got.Status != fleet.StatusCancelled {
			t.Fatalf("finished %+v", got)
		}
	})
	t.Run("not confirmed", func(t *testing.T) {
		cmd := f.submit(t, dispatch.Request{AgentID: id, Command: "sleep"})
		a.Expect(t, agentproto.TypeCommandRequest, nil)
		if _, err := f.svc.Cancel(ctx, cmd.ID, "op"); err != nil {
			t.Fatal(err)
		}
		a.Expect(t, agentproto.TypeCommandCancel, nil)
		got := f.wait(t, cmd.ID)
		if got.Status != fleet.StatusCancelled || got.Error != "cancel not confirmed by agent" {
			t.Fatalf("finished %+v", got)
		}
		// A late result is acknowledged but changes nothing. (The server
		// repeats command_cancel when it gives up waiting; skip it.)
		send(t, a, agentproto.TypeCommandResult, "", agentproto.CommandResult{CommandID: cmd.ID, Status: agentproto.ResultCompleted})
		a.Expect(t, agentproto.TypeResultAck, nil, agentproto.TypeCommandCancel)
		if again, _ := f.env.Store.Command(ctx, cmd.ID); again.Status != fleet.StatusCancelled {
			t.Fatalf("late result changed the command: %+v", again)
		}
	})
	t.Run("queued, then already final", func(t *testing.T) {
		offline, _ := f.env.NewAgent(t, "offline")
		cmd := f.submit(t, dispatch.Request{AgentID: offline, Command: "ls", QueueIfOffline: true})
		got, err := f.svc.Cancel(ctx, cmd.ID, "op")
		if err != nil || got.Status != fleet.StatusCancelled || !strings.Contains(got.Error, "op") {
			t.Fatalf("cancel queued: %+v, %v", got, err)
		}
		if _, err := f.svc.Cancel(ctx, cmd.ID, "op"); !errors.Is(err, fleet.ErrAlreadyFinal) {
			t.Fatalf("second cancel: %v", err)
		}
		if _, err := f.svc.Cancel(ctx, "cmd_nope", "op"); !errors.Is(err, dispatch.ErrUnknownCommand) {
			t.Fatalf("cancel unknown: %v", err)
		}
	})
}

func TestTimeoutWithoutResult(t *testing.T) {
	f := start(t, dispatch.Config{ResultGrace: 100 * time.Millisecond})
	id, cred := f.env.NewAgent(t, "a")
	a := f.env.Connect(t, cred)
	cmd := f.submit(t, dispatch.Request{AgentID: id, Command: "hang", Timeout: 200 * time.Millisecond})
	a.Expect(t, agentproto.TypeCommandRequest, nil)
	started := time.Now()
	got := f.wait(t, cmd.ID)
	if got.Status != fleet.StatusTimedOut || got.Error != "no result from agent within timeout" {
		t.Fatalf("finished %+v", got)
	}
	if took := time.Since(started); took < 250*time.Millisecond {
		t.Fatalf("timed out after only %s", took)
	}
	var ref agentproto.CommandRef
	a.Expect(t, agentproto.TypeCommandCancel, &ref)
	if ref.CommandID != cmd.ID {
		t.Fatalf("cancel for %s", ref.CommandID)
	}
}

func TestResultStoredOnceAckedTwice(t *testing.T) {
	f := start(t, dispatch.Config{})
	id, cred := f.env.NewAgent(t, "a")
	a := f.env.Connect(t, cred)
	cmd := f.submit(t, dispatch.Request{AgentID: id, Command: "false"})
	a.Expect(t, agentproto.TypeCommandRequest, nil)
	results := []agentproto.CommandResult{
		{CommandID: cmd.ID, Status: agentproto.ResultFailed, ExitCode: 1, Stderr: "boom"},
		{CommandID: cmd.ID, Status: agentproto.ResultCompleted, ExitCode: 0},
	}
	for _, r := range results {
		send(t, a, agentproto.TypeCommandResult, "", r)
		var ack agentproto.CommandRef
		a.Expect(t, agentproto.TypeResultAck, &ack)
		if ack.CommandID != cmd.ID {
			t.Fatalf("ack %+v", ack)
		}
	}
	got := f.wait(t, cmd.ID)
	if got.Status != fleet.StatusFailed || *got.ExitCode != 1 || got.Stderr != "boom" || got.Error != "exited with code 1" {
		t.Fatalf("stored %+v", got)
	}
}

func TestResultMapping(t *testing.T) {
	f := start(t, dispatch.Config{MaxOutputBytes: 1000})
	id, cred := f.env.NewAgent(t, "a")
	a := f.env.Connect(t, cred)
	run := func(t *testing.T, r agentproto.CommandResult) fleet.Command {
		t.Helper()
		cmd := f.submit(t, dispatch.Request{AgentID: id, Command: "x"})
		a.Expect(t, agentproto.TypeCommandRequest, nil)
		r.CommandID = cmd.ID
		send(t, a, agentproto.TypeCommandResult, "", r)
		a.Expect(t, agentproto.TypeResultAck, nil)
		return f.wait(t, cmd.ID)
	}
	t.Run("output over the limit is truncated", func(t *testing.T) {
		got := run(t, agentproto.CommandResult{Status: agentproto.ResultCompleted, Stdout: strings.Repeat("o", 3000), Stderr: "err"})
		if !got.Truncated || len(got.Stdout)+len(got.Stderr) != 1000 || got.Stderr != "err" {
			t.Fatalf("truncated=%v stdout %d stderr %q", got.Truncated, len(got.Stdout), got.Stderr)
		}
	})
	t.Run("rejected becomes failed", func(t *testing.T) {
		got := run(t, agentproto.CommandResult{Status: agentproto.ResultRejected, Error: "x is not allowed"})
		if got.Status != fleet.StatusFailed || got.ExitCode != nil || got.Error != "rejected by the agent: x is not allowed" {
			t.Fatalf("got %+v", got)
		}
	})
	t.Run("agent timeout", func(t *testing.T) {
		if got := run(t, agentproto.CommandResult{Status: agentproto.ResultTimedOut, ExitCode: -1}); got.Status != fleet.StatusTimedOut {
			t.Fatalf("got %+v", got)
		}
	})
}

func TestResultForAnotherAgentsCommandIgnored(t *testing.T) {
	f := start(t, dispatch.Config{})
	owner, ownerCred := f.env.NewAgent(t, "owner")
	_, otherCred := f.env.NewAgent(t, "other")
	o := f.env.Connect(t, ownerCred)
	other := f.env.Connect(t, otherCred)
	cmd := f.submit(t, dispatch.Request{AgentID: owner, Command: "x"})
	o.Expect(t, agentproto.TypeCommandRequest, nil)
	send(t, other, agentproto.TypeCommandResult, "", agentproto.CommandResult{CommandID: cmd.ID, Status: agentproto.ResultCompleted})
	other.Expect(t, agentproto.TypeResultAck, nil)
	got, _ := f.env.Store.Command(context.Background(), cmd.ID)
	if got.Status.Terminal() {
		t.Fatalf("another agent finished the command: %+v", got)
	}
}

func TestRecoverTimesOutCommandsLeftByACrash(t *testing.T) {
	env := hubtest.Start(t, hub.Config{})
	ctx := context.Background()
	id, _ := env.NewAgent(t, "a")
	now := time.Now().UTC()
	left := fleet.Command{ID: "cmd_crashed", AgentID: id, Command: "x", Timeout: 100 * time.Millisecond,
		Status: fleet.StatusPending, CreatedAt: now}
	if err := env.Store.CreateCommand(ctx, left); err != nil {
		t.Fatal(err)
	}
	if err := env.Store.MarkDispatched(ctx, left.ID, now); err != nil {
		t.Fatal(err)
	}
	svc := dispatch.New(env.Store, env.Hub, env.Bus, env.Log, dispatch.Config{TickInterval: 20 * time.Millisecond, ResultGrace: 50 * time.Millisecond})
	if err := svc.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); svc.Run(runCtx) }()
	defer func() { cancel(); <-done }()
	got, err := svc.Wait(ctxT(t, 5*time.Second), left.ID)
	if err != nil || got.Status != fleet.StatusTimedOut {
		t.Fatalf("recovered command: %+v, %v", got, err)
	}
}

// running submits a command to the connected agent a and has it accept it.
func (f *fixture) running(t *testing.T, a *hubtest.Agent, agentID string) fleet.Command {
	t.Helper()
	cmd := f.submit(t, dispatch.Request{AgentID: agentID, Command: "sleep", Timeout: time.Minute})
	a.Expect(t, agentproto.TypeCommandRequest, nil)
	send(t, a, agentproto.TypeCommandAccepted, "", agentproto.CommandRef{CommandID: cmd.ID})
	hubtest.Eventually(t, 5*time.Second, "running", func() bool {
		c, err := f.env.Store.Command(context.Background(), cmd.ID)
		return err == nil && c.Status == fleet.StatusRunning
	})
	return cmd
}

// disconnect closes a's connection and waits until the hub sees it.
func (f *fixture) disconnect(t *testing.T, a *hubtest.Agent, agentID string) {
	t.Helper()
	_ = a.Conn.CloseNow()
	hubtest.Eventually(t, 5*time.Second, "offline", func() bool { return !f.env.Hub.Online(agentID) })
}

// expectCancel reads the next message, which must be command_cancel for id.
func expectCancel(t *testing.T, a *hubtest.Agent, id string) {
	t.Helper()
	var ref agentproto.CommandRef
	a.Expect(t, agentproto.TypeCommandCancel, &ref)
	if ref.CommandID != id {
		t.Fatalf("command_cancel for %s, want %s", ref.CommandID, id)
	}
}

func TestCancelSurvivesRestart(t *testing.T) {
	cfg := dispatch.Config{CancelGrace: time.Minute}
	f := start(t, cfg)
	id, cred := f.env.NewAgent(t, "a")
	a := f.env.Connect(t, cred)
	cmd := f.running(t, a, id)
	got, err := f.svc.Cancel(context.Background(), cmd.ID, "op")
	if err != nil || got.Status.Terminal() || got.CancelRequestedBy != "op" || got.CancelRequestedAt.IsZero() {
		t.Fatalf("cancel: %+v, %v", got, err)
	}
	expectCancel(t, a, cmd.ID)
	// A second one, delivered but never acknowledged.
	unacked := f.submit(t, dispatch.Request{AgentID: id, Command: "sleep"})
	a.Expect(t, agentproto.TypeCommandRequest, nil)
	if _, err := f.svc.Cancel(context.Background(), unacked.ID, "op"); err != nil {
		t.Fatal(err)
	}
	expectCancel(t, a, unacked.ID)
	f.disconnect(t, a, id)

	f.restart(t, cfg)
	b := f.env.Connect(t, cred, cmd.ID)
	expectCancel(t, b, cmd.ID) // not command_request
	expectCancel(t, b, unacked.ID)
	send(t, b, agentproto.TypeCommandResult, "", agentproto.CommandResult{CommandID: cmd.ID, Status: agentproto.ResultCancelled, ExitCode: -1})
	b.Expect(t, agentproto.TypeResultAck, nil)
	if got := f.wait(t, cmd.ID); got.Status != fleet.StatusCancelled || got.Error != "cancelled on the agent" || got.Attempts != 1 {
		t.Fatalf("finished %+v", got)
	}
}

func TestCancelWhileOfflineStopsTheCommandOnReconnect(t *testing.T) {
	f := start(t, dispatch.Config{})
	id, cred := f.env.NewAgent(t, "a")
	a := f.env.Connect(t, cred)
	cmd := f.running(t, a, id)
	f.disconnect(t, a, id)

	got, err := f.svc.Cancel(context.Background(), cmd.ID, "op")
	if err != nil || got.Status != fleet.StatusCancelled || got.Error != "cancelled by op while the agent was offline" ||
		got.CancelRequestedBy != "op" {
		t.Fatalf("cancel: %+v, %v", got, err)
	}
	b := f.env.Connect(t, cred, cmd.ID)
	expectCancel(t, b, cmd.ID)
}

func TestCancelGraceAfterRestart(t *testing.T) {
	cfg := dispatch.Config{CancelGrace: 300 * time.Millisecond}
	f := start(t, cfg)
	id, cred := f.env.NewAgent(t, "a")
	a := f.env.Connect(t, cred)
	cmd := f.running(t, a, id)
	requested := time.Now() // before the request's stored time, which the grace counts from
	if _, err := f.svc.Cancel(context.Background(), cmd.ID, "op"); err != nil {
		t.Fatal(err)
	}
	expectCancel(t, a, cmd.ID)

	f.restart(t, cfg) // the agent stays connected and never confirms
	got := f.wait(t, cmd.ID)
	if got.Status != fleet.StatusCancelled || got.Error != "cancel not confirmed by agent" {
		t.Fatalf("finished %+v", got)
	}
	if took := time.Since(requested); took < 300*time.Millisecond {
		t.Fatalf("finished after only %s", took)
	}
	expectCancel(t, a, cmd.ID) // the server's last word when it gives up
}
