package dispatch_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/home-console/client-manager/internal/dispatch"
	"github.com/home-console/client-manager/internal/fleet"
	"github.com/home-console/client-manager/internal/hub/hubtest"
	"github.com/home-console/client-manager/pkg/agentproto"
)

// fullDisk is a store whose disk can be filled: while full, finishing a
// command fails as internal/sqlite fails on a full disk.
type fullDisk struct {
	fleet.Store
	full     atomic.Bool
	refusals atomic.Int32
}

func (d *fullDisk) FinishCommand(ctx context.Context, id string, r fleet.CommandResult) error {
	if d.full.Load() {
		d.refusals.Add(1)
		return fmt.Errorf("sqlite: finish command %s: %w", id, &fleet.Error{
			Code: fleet.CodeStorageUnavailable, Message: "storage unavailable: injected full disk"})
	}
	return d.Store.FinishCommand(ctx, id, r)
}

// startFull is start with the Service's store behind a fullDisk.
func startFull(t *testing.T, cfg dispatch.Config) (*fixture, *fullDisk) {
	t.Helper()
	f := start(t, cfg)
	disk := &fullDisk{Store: f.env.Store}
	f.store = disk
	f.restart(t, cfg)
	return f, disk
}

// sendResult sends a completed result of cmd with stdout out as message
// ref and returns the server's answer: result_ack or error.
func sendResult(t *testing.T, a *hubtest.Agent, cmdID, ref, out string) agentproto.Envelope {
	t.Helper()
	send(t, a, agentproto.TypeCommandResult, ref, agentproto.CommandResult{
		CommandID: cmdID, Status: agentproto.ResultCompleted, ExitCode: 0, Stdout: out,
	})
	for {
		env, err := a.Read(ctxT(t, 10*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if env.Type == agentproto.TypeResultAck || env.Type == agentproto.TypeError {
			return env
		}
	}
}

// TestHeldResultIsStoredWhenTheDiskRecovers: a result the store refuses
// is answered result_not_stored, not acknowledged; its command is not
// timed out (long past its deadline) nor cancelled; once the disk takes
// writes again it is stored with its real status and output and then
// acknowledged to the agent, unasked.
func TestHeldResultIsStoredWhenTheDiskRecovers(t *testing.T) {
	f, disk := startFull(t, dispatch.Config{ResultGrace: 50 * time.Millisecond})
	id, cred := f.env.NewAgent(t, "a")
	a := f.env.Connect(t, cred)
	cmd := f.submit(t, dispatch.Request{AgentID: id, Command: "echo", Timeout: 100 * time.Millisecond})
	a.Expect(t, agentproto.TypeCommandRequest, nil)

	disk.full.Store(true)
	for _, ref := range []string{"r1", "r2"} { // the agent sends it again: still held, still not stored
		var e agentproto.Error
		env := sendResult(t, a, cmd.ID, ref, "hi\n")
		if env.Type != agentproto.TypeError || decodeData(t, env, &e).Code != "result_not_stored" || e.Ref != ref {
			t.Fatalf("answer to a refused result: %s %s", env.Type, env.Data)
		}
	}
	if n := f.svc.Held(); n != 1 {
		t.Fatalf("%d results held, want 1", n)
	}
	if _, err := f.svc.Cancel(context.Background(), cmd.ID, "op"); err != nil {
		t.Fatalf("cancel of a held command: %v", err)
	}
	// The retries (0.5 s after the refusal, then 1 s after that) come long past the command's
	// deadline (0.15 s).
	hubtest.Eventually(t, 10*time.Second, "the held result retried twice", func() bool { return disk.refusals.Load() >= 3 })
	if got, err := f.env.Store.Command(context.Background(), cmd.ID); err != nil || got.Status.Terminal() {
		t.Fatalf("held command ended as %+v, %v while the disk was full", got, err)
	}

	disk.full.Store(false)
	var ack agentproto.CommandRef
	a.Expect(t, agentproto.TypeResultAck, &ack, agentproto.TypeCommandCancel)
	if ack.CommandID != cmd.ID {
		t.Fatalf("ack for %s", ack.CommandID)
	}
	got := f.wait(t, cmd.ID)
	if got.Status != fleet.StatusCompleted || got.Stdout != "hi\n" || got.ExitCode == nil || *got.ExitCode != 0 {
		t.Fatalf("stored %+v", got)
	}
	if n := f.svc.Held(); n != 0 {
		t.Fatalf("%d results still held", n)
	}
	// A re-send after it was stored is acknowledged as a duplicate.
	if env := sendResult(t, a, cmd.ID, "r3", "hi\n"); env.Type != agentproto.TypeResultAck {
		t.Fatalf("answer to a re-send: %s %s", env.Type, env.Data)
	}
}

// TestResultBeyondTheHoldLimit: a refused result that does not fit
// MaxHeldBytes is not held (the agent keeps it), and its command waits
// RefusedResultGrace for the re-send instead of timing out; the re-send
// after the disk recovers is stored.
func TestResultBeyondTheHoldLimit(t *testing.T) {
	f, disk := startFull(t, dispatch.Config{ResultGrace: 50 * time.Millisecond, MaxHeldBytes: 100, RefusedResultGrace: time.Hour})
	id, cred := f.env.NewAgent(t, "a")
	a := f.env.Connect(t, cred)
	cmd := f.submit(t, dispatch.Request{AgentID: id, Command: "echo", Timeout: 100 * time.Millisecond})
	a.Expect(t, agentproto.TypeCommandRequest, nil)
	disk.full.Store(true)
	if env := sendResult(t, a, cmd.ID, "r1", "hi\n"); env.Type != agentproto.TypeError {
		t.Fatalf("answer: %s %s", env.Type, env.Data)
	}
	if n := f.svc.Held(); n != 0 {
		t.Fatalf("%d results held over the limit", n)
	}
	disk.full.Store(false)
	time.Sleep(400 * time.Millisecond)
	if got, err := f.env.Store.Command(context.Background(), cmd.ID); err != nil || got.Status.Terminal() {
		t.Fatalf("command ended as %+v, %v before the agent sent its result again", got, err)
	}
	if env := sendResult(t, a, cmd.ID, "r2", "hi\n"); env.Type != agentproto.TypeResultAck {
		t.Fatalf("answer to the re-send: %s %s", env.Type, env.Data)
	}
	if got := f.wait(t, cmd.ID); got.Status != fleet.StatusCompleted {
		t.Fatalf("stored %+v", got)
	}
}

// decodeData decodes env's data into v and returns v.
func decodeData[T any](t *testing.T, env agentproto.Envelope, v *T) *T {
	t.Helper()
	if err := json.Unmarshal(env.Data, v); err != nil {
		t.Fatal(err)
	}
	return v
}
