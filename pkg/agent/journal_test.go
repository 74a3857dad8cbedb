package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/home-console/client-manager/internal/dirlock"
	"github.com/home-console/client-manager/pkg/agentproto"
)

func testJournal(t *testing.T, path string, log *slog.Logger) (*journal, []string, []agentproto.CommandResult) {
	t.Helper()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	j, err := openJournal(path, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	acked, unacked, err := j.Replay(time.Now().UTC())
	if err != nil {
		t.Fatal(err)
	}
	return j, acked, unacked
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestJournalReplaysEachRecordKind(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", "journal.jsonl")
	j, _, _ := testJournal(t, path, nil)
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	done := agentproto.CommandResult{CommandID: "done", Status: agentproto.ResultCompleted, Stdout: "out\n",
		StartedAt: t0, FinishedAt: t0.Add(time.Second)}
	must(t, j.Started("died", t0))
	must(t, j.Started("done", t0))
	must(t, j.Finished(done))
	must(t, j.Started("acked", t0))
	must(t, j.Finished(agentproto.CommandResult{CommandID: "acked", Status: agentproto.ResultCompleted}))
	must(t, j.Acked("acked"))
	must(t, j.Acked("unknown"))
	j.Close()

	for round := range 2 { // the second round reads the compacted file
		j, acked, unacked := testJournal(t, path, nil)
		j.Close() // the next round opens it again
		if strings.Join(acked, ",") != "acked" || len(unacked) != 2 {
			t.Fatalf("round %d: acked %v, unacked %+v", round, acked, unacked)
		}
		if died := unacked[1]; died.CommandID != "died" || died.Status != agentproto.ResultFailed ||
			died.ExitCode != -1 || died.Error != restartedError || !died.StartedAt.Equal(t0) {
			t.Errorf("round %d: died = %+v", round, died)
		}
		if got := unacked[0]; got.CommandID != "done" || got.Stdout != "out\n" || !got.FinishedAt.Equal(done.FinishedAt) {
			t.Errorf("round %d: done = %+v", round, got)
		}
	}
	for p, want := range map[string]os.FileMode{path: 0o600, filepath.Dir(path): 0o700 | os.ModeDir} {
		if fi, err := os.Stat(p); err != nil || fi.Mode() != want {
			t.Errorf("%s: mode %v (%v), want %v", p, fi.Mode(), err, want)
		}
	}
}

func TestJournalIsLockedWhileOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal-ag1.jsonl")
	j, _, _ := testJournal(t, path, nil)
	must(t, j.Started("c1", time.Now()))
	_, err := openJournal(path, slog.New(slog.DiscardHandler))
	var held *dirlock.HeldError
	if !errors.Is(err, ErrJournalInUse) || !errors.As(err, &held) || held.PID != os.Getpid() ||
		!strings.Contains(err.Error(), fmt.Sprintf("pid %d", os.Getpid())) {
		t.Fatalf("second open = %v, want ErrJournalInUse naming pid %d", err, os.Getpid())
	}
	other, _, _ := testJournal(t, filepath.Join(filepath.Dir(path), "journal-ag2.jsonl"), nil)
	must(t, other.Started("c2", time.Now()))
	must(t, j.Close())
	must(t, j.Close())
	if err := j.Started("c3", time.Now()); !errors.Is(err, errJournalClosed) {
		t.Errorf("record after Close = %v, want errJournalClosed", err)
	}
	_, _, unacked := testJournal(t, path, nil)
	if len(unacked) != 1 || unacked[0].CommandID != "c1" {
		t.Errorf("reopened after Close: unacked %+v, want only c1", unacked)
	}
}

func TestJournalIgnoresTornLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal.jsonl")
	content := `{"rec":"acked","id":"a1"}` + "\n" +
		`{"rec":"result","result":{"command_id":"r1","status":"completed","exit_code":0}}` + "\n" +
		`{"rec":"result","result":{"command_id":"r2","sta`
	must(t, os.WriteFile(path, []byte(content), 0o600))
	var logs bytes.Buffer // Replay logs from this goroutine only
	j, acked, unacked := testJournal(t, path, slog.New(slog.NewTextHandler(&logs, nil)))
	if strings.Join(acked, ",") != "a1" || len(unacked) != 1 || unacked[0].CommandID != "r1" {
		t.Errorf("acked %v, unacked %+v", acked, unacked)
	}
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "line=3") {
		t.Errorf("no warning about line 3:\n%s", logs.String())
	}
	must(t, j.Acked("r1"))
	j.Close()
	if b, _ := os.ReadFile(path); bytes.Contains(b, []byte(`"r2"`)) || !bytes.HasSuffix(b, []byte("\n")) {
		t.Errorf("torn line survived compaction:\n%s", b)
	}
	if _, acked, _ := testJournal(t, path, nil); strings.Join(acked, ",") != "a1,r1" {
		t.Errorf("after compaction acked %v", acked)
	}
}

func TestJournalKeepsLastAckedIDs(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal.jsonl")
	var b strings.Builder
	for i := range 2000 {
		fmt.Fprintf(&b, `{"rec":"acked","id":"c%d"}`+"\n", i)
	}
	must(t, os.WriteFile(path, []byte(b.String()), 0o600))
	_, acked, _ := testJournal(t, path, nil)
	if len(acked) != rememberedResults || acked[0] != "c976" || acked[len(acked)-1] != "c1999" {
		t.Errorf("kept %d ids, %s … %s", len(acked), acked[0], acked[len(acked)-1])
	}
}

func TestJournalCompactionBoundsTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal.jsonl")
	j, _, _ := testJournal(t, path, nil)
	out := strings.Repeat("x", 32<<10)
	for i := range 300 { // about 9.6 MiB of results
		id := fmt.Sprintf("c%d", i)
		must(t, j.Started(id, time.Now()))
		must(t, j.Finished(agentproto.CommandResult{CommandID: id, Status: agentproto.ResultCompleted, Stdout: out}))
		must(t, j.Acked(id))
		if fi, err := os.Stat(path); err != nil || fi.Size() > minCompactBytes+64<<10 {
			t.Fatalf("after %d commands the file has %d bytes (%v)", i+1, fi.Size(), err)
		}
	}
	must(t, j.Started("last", time.Now()))
	j.Close()
	_, acked, unacked := testJournal(t, path, nil)
	if len(acked) != 300 || len(unacked) != 1 || unacked[0].Error != restartedError {
		t.Errorf("after compactions: %d acked, unacked %+v", len(acked), unacked)
	}
	if fi, _ := os.Stat(path); fi.Size() > 64<<10 {
		t.Errorf("compacted file has %d bytes", fi.Size())
	}
}

// crashCopy copies the journal as it is now, as a process killed at this
// point would leave it.
func crashCopy(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	must(t, err)
	cp := filepath.Join(t.TempDir(), "crashed.jsonl")
	must(t, os.WriteFile(cp, b, 0o600))
	return cp
}

func TestJournalCommandRunningAtCrashIsNotRunAgain(t *testing.T) {
	h := newFakeHub(t)
	r := &countingRunner{release: make(chan struct{})}
	path := filepath.Join(t.TempDir(), "journal.jsonl")
	_, stop, done := startAgent(t, h, Config{Allowed: []string{"x"}, Runner: r, JournalPath: path})
	c := h.next(t, 5*time.Second)
	req := agentproto.CommandRequest{CommandID: "long", Command: "x"}
	c.send(agentproto.TypeCommandRequest, req)
	c.expect(t, agentproto.TypeCommandAccepted, nil)
	for r.runs.Load() == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	crashed := crashCopy(t, path)
	stop()
	waitRun(t, done, 10*time.Second)

	startAgent(t, h, Config{Allowed: []string{"x"}, Runner: r, JournalPath: crashed})
	c = h.next(t, 5*time.Second)
	if len(c.hello.Running) != 0 {
		t.Errorf("hello.running = %v", c.hello.Running)
	}
	var res, again agentproto.CommandResult
	c.expect(t, agentproto.TypeCommandResult, &res)
	c.send(agentproto.TypeCommandRequest, req) // the server delivers it again
	c.expect(t, agentproto.TypeCommandAccepted, nil)
	c.expect(t, agentproto.TypeCommandResult, &again)
	for _, got := range []agentproto.CommandResult{res, again} {
		if got.CommandID != "long" || got.Status != agentproto.ResultFailed || got.ExitCode != -1 || got.Error != restartedError {
			t.Errorf("result %+v", got)
		}
	}
	if n := r.runs.Load(); n != 1 {
		t.Errorf("ran %d times, want 1", n)
	}
}

func TestJournalUnackedResultResentAfterRestart(t *testing.T) {
	h := newFakeHub(t)
	h.autoAck.Store(false)
	path := filepath.Join(t.TempDir(), "journal.jsonl")
	r := &countingRunner{}
	_, stop, done := startAgent(t, h, Config{Allowed: []string{"x"}, Runner: r, JournalPath: path})
	c := h.next(t, 5*time.Second)
	c.send(agentproto.TypeCommandRequest, agentproto.CommandRequest{CommandID: "r1", Command: "x"})
	var res agentproto.CommandResult
	c.expect(t, agentproto.TypeCommandResult, &res, agentproto.TypeCommandAccepted, agentproto.TypeCommandOutput)
	stop() // no ack
	waitRun(t, done, 10*time.Second)

	h.autoAck.Store(true)
	_, stop, done = startAgent(t, h, Config{Allowed: []string{"x"}, Runner: r, JournalPath: path})
	c = h.next(t, 5*time.Second)
	var again agentproto.CommandResult
	c.expect(t, agentproto.TypeCommandResult, &again)
	if again.Stdout != "ran r1" || !again.StartedAt.Equal(res.StartedAt) || !again.FinishedAt.Equal(res.FinishedAt) {
		t.Errorf("re-sent %+v, want %+v", again, res)
	}
	time.Sleep(100 * time.Millisecond) // let the ack be read
	stop()
	waitRun(t, done, 10*time.Second)
	if _, acked, unacked := testJournal(t, path, nil); strings.Join(acked, ",") != "r1" || len(unacked) != 0 {
		t.Errorf("after the ack: acked %v, unacked %+v", acked, unacked)
	}
	if n := r.runs.Load(); n != 1 {
		t.Errorf("ran %d times, want 1", n)
	}
}

// TestSecondAgentOnOneJournalIsRefused runs two agents on one journal:
// the second Run fails before connecting, and works once the first ended.
func TestSecondAgentOnOneJournalIsRefused(t *testing.T) {
	h := newFakeHub(t)
	path := filepath.Join(t.TempDir(), "journal.jsonl")
	_, stop, done := startAgent(t, h, Config{JournalPath: path})
	h.next(t, 5*time.Second)
	second, err := New(Config{ServerURL: h.srv.URL, Credential: testCredential, JournalPath: path})
	must(t, err)
	if err := second.Run(context.Background()); !errors.Is(err, ErrJournalInUse) {
		t.Fatalf("second Run = %v, want ErrJournalInUse", err)
	}
	if n := h.attempts.Load(); n != 1 {
		t.Errorf("%d connection attempts, want only the first agent's", n)
	}
	stop()
	waitRun(t, done, 10*time.Second)
	startAgent(t, h, Config{JournalPath: path})
	h.next(t, 5*time.Second)
}
