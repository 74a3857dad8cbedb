package sqlite

import (
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/home-console/client-manager/internal/fleet"
)

// newCommand returns a pending command created at at(created).
func newCommand(id, client string, created time.Duration) fleet.Command {
	return fleet.Command{ID: id, AgentID: client, Command: "uptime", Args: []string{},
		Status: fleet.StatusPending, CreatedAt: at(created)}
}

func createCommands(t testing.TB, s *Store, cs ...fleet.Command) {
	t.Helper()
	for _, c := range cs {
		if err := s.CreateCommand(t.Context(), c); err != nil {
			t.Fatal(err)
		}
	}
}

func checkCommand(t *testing.T, s *Store, want fleet.Command) {
	t.Helper()
	got, err := s.Command(t.Context(), want.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Command(%s) =\n%+v\nwant\n%+v", want.ID, got, want)
	}
}

func TestCommandRoundTrip(t *testing.T) {
	s := openStore(t)
	code := 3
	c := fleet.Command{
		ID: "c1", AgentID: "a1", Command: "systemctl", Args: []string{"restart", "nginx"},
		Timeout: 90 * time.Second, Status: fleet.StatusFailed, RequestedBy: "alice", BatchID: "b1",
		ExpiresAt: at(time.Hour), CreatedAt: at(0), DispatchedAt: at(time.Second), FinishedAt: at(2 * time.Second),
		Attempts: 2, ExitCode: &code, Stdout: "out\x00bin", Stderr: "err ✓", Truncated: true, Error: "exit status 3",
		CancelRequestedAt: at(1500 * time.Millisecond), CancelRequestedBy: "bob",
	}
	createCommands(t, s, c)
	checkCommand(t, s, c)
	wantErr(t, "duplicate CreateCommand", s.CreateCommand(t.Context(), c), fleet.ErrConflict)

	bare := fleet.Command{ID: "c2", AgentID: "a1", Command: "true", Status: fleet.StatusQueued}
	createCommands(t, s, bare)
	bare.Args = []string{}
	checkCommand(t, s, bare)
}

func TestCommandLifecycle(t *testing.T) {
	s := openStore(t)
	ctx := t.Context()
	c := newCommand("c1", "a1", 0)
	c.Status = fleet.StatusQueued
	createCommands(t, s, c)

	steps := []struct {
		name string
		do   func() error
		want error
		edit func(*fleet.Command)
	}{
		{"dispatch", func() error { return s.MarkDispatched(ctx, "c1", at(time.Second)) }, nil,
			func(c *fleet.Command) {
				c.Status, c.Attempts, c.DispatchedAt = fleet.StatusDispatched, 1, at(time.Second)
			}},
		{"running", func() error { return s.MarkRunning(ctx, "c1") }, nil,
			func(c *fleet.Command) { c.Status = fleet.StatusRunning }},
		{"running again is a no-op", func() error { return s.MarkRunning(ctx, "c1") }, nil,
			func(*fleet.Command) {}},
		{"redelivery keeps running", func() error { return s.MarkDispatched(ctx, "c1", at(time.Minute)) }, nil,
			func(c *fleet.Command) { c.Attempts, c.DispatchedAt = 2, at(time.Minute) }},
		{"finish", func() error {
			return s.FinishCommand(ctx, "c1", fleet.CommandResult{Status: fleet.StatusCompleted,
				ExitCode: new(0), Stdout: "up 3 days", At: at(2 * time.Minute)})
		}, nil, func(c *fleet.Command) {
			c.Status, c.ExitCode, c.Stdout, c.FinishedAt = fleet.StatusCompleted, new(0), "up 3 days", at(2*time.Minute)
		}},
		{"finish again", func() error {
			return s.FinishCommand(ctx, "c1", fleet.CommandResult{Status: fleet.StatusFailed, Error: "late"})
		}, fleet.ErrAlreadyFinal, func(*fleet.Command) {}},
		{"dispatch after finish", func() error { return s.MarkDispatched(ctx, "c1", at(time.Hour)) },
			fleet.ErrAlreadyFinal, func(*fleet.Command) {}},
		{"running after finish", func() error { return s.MarkRunning(ctx, "c1") },
			fleet.ErrAlreadyFinal, func(*fleet.Command) {}},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			wantErr(t, st.name, st.do(), st.want)
			st.edit(&c)
			checkCommand(t, s, c)
		})
	}
}

func TestFinishCommandDefaultsAndValidation(t *testing.T) {
	s := openStore(t)
	createCommands(t, s, newCommand("c1", "a1", 0))
	err := s.FinishCommand(t.Context(), "c1", fleet.CommandResult{Status: fleet.StatusRunning})
	if err == nil || errors.Is(err, fleet.ErrAlreadyFinal) {
		t.Errorf("finish with a live status: error = %v, want a validation error", err)
	}
	before := time.Now()
	if err := s.FinishCommand(t.Context(), "c1", fleet.CommandResult{Status: fleet.StatusCancelled}); err != nil {
		t.Fatal(err)
	}
	c, err := s.Command(t.Context(), "c1")
	if err != nil {
		t.Fatal(err)
	}
	if c.FinishedAt.Before(before) || c.FinishedAt.After(time.Now()) {
		t.Errorf("FinishedAt = %v, want now for a zero CommandResult.At", c.FinishedAt)
	}
}

func TestCommandNotFound(t *testing.T) {
	s := openStore(t)
	ctx := t.Context()
	tests := map[string]func() error{
		"Command":        func() error { _, err := s.Command(ctx, "nope"); return err },
		"MarkDispatched": func() error { return s.MarkDispatched(ctx, "nope", at(0)) },
		"MarkRunning":    func() error { return s.MarkRunning(ctx, "nope") },
		"RequestCancel":  func() error { return s.RequestCancel(ctx, "nope", "op", at(0)) },
		"FinishCommand": func() error {
			return s.FinishCommand(ctx, "nope", fleet.CommandResult{Status: fleet.StatusCompleted, At: at(0)})
		},
		"DeleteEnrollmentToken": func() error { return s.DeleteEnrollmentToken(ctx, "nope") },
	}
	for name, call := range tests {
		err := call()
		wantErr(t, name, err, fleet.ErrNotFound)
		if err != nil && !strings.Contains(err.Error(), "nope") {
			t.Errorf("%s: error %q does not name the id", name, err)
		}
	}
}

func TestRequestCancel(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fleet.db")
	s, err := Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	c, done := newCommand("c1", "a1", 0), newCommand("c2", "a1", time.Minute)
	createCommands(t, s, c, done)
	if err := s.RequestCancel(ctx, "c1", "alice", at(time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := s.RequestCancel(ctx, "c1", "bob", at(2*time.Second)); err != nil {
		t.Fatalf("second request: %v", err)
	}
	c.CancelRequestedAt, c.CancelRequestedBy = at(time.Second), "alice"
	checkCommand(t, s, c)

	if err := s.FinishCommand(ctx, "c2", fleet.CommandResult{Status: fleet.StatusCompleted, At: at(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "RequestCancel of a terminal command", s.RequestCancel(ctx, "c2", "alice", at(time.Second)), fleet.ErrAlreadyFinal)
	if got, _ := s.Command(ctx, "c2"); !got.CancelRequestedAt.IsZero() || got.CancelRequestedBy != "" {
		t.Errorf("terminal command changed: %+v", got)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openPath(t, path)
	live, err := s.LiveCommands(ctx, "a1")
	if err != nil {
		t.Fatal(err)
	}
	if len(live) != 1 || !reflect.DeepEqual(live[0], c) {
		t.Errorf("LiveCommands after reopen = %+v, want [%+v]", live, c)
	}
}

// TestFinishCommandExactlyOnce races finishers with different results: one
// wins, the others get ErrAlreadyFinal, and the winner's result is stored.
func TestFinishCommandExactlyOnce(t *testing.T) {
	const racers = 50
	s := openStore(t)
	ctx := t.Context()
	createCommands(t, s, newCommand("c1", "a1", 0))
	statuses := []fleet.CommandStatus{fleet.StatusCompleted, fleet.StatusFailed, fleet.StatusCancelled, fleet.StatusTimedOut}
	winners := make(chan fleet.CommandResult, racers)
	var wg sync.WaitGroup
	for i := range racers {
		r := fleet.CommandResult{Status: statuses[i%len(statuses)], ExitCode: new(i),
			Stdout: fmt.Sprintf("racer %d", i), At: at(time.Duration(i) * time.Second)}
		wg.Go(func() {
			switch err := s.FinishCommand(ctx, "c1", r); {
			case err == nil:
				winners <- r
			case !errors.Is(err, fleet.ErrAlreadyFinal):
				t.Error(err)
			}
		})
	}
	wg.Wait()
	close(winners)
	var won []fleet.CommandResult
	for r := range winners {
		won = append(won, r)
	}
	if len(won) != 1 {
		t.Fatalf("%d finishers succeeded, want 1", len(won))
	}
	c, err := s.Command(ctx, "c1")
	if err != nil {
		t.Fatal(err)
	}
	w := won[0]
	if c.Status != w.Status || *c.ExitCode != *w.ExitCode || c.Stdout != w.Stdout || !c.FinishedAt.Equal(w.At) {
		t.Errorf("stored %s %d %q %v, want the winner's %s %d %q %v",
			c.Status, *c.ExitCode, c.Stdout, c.FinishedAt, w.Status, *w.ExitCode, w.Stdout, w.At)
	}
}

func commandIDs(cs []fleet.Command) string {
	var ids []string
	for _, c := range cs {
		ids = append(ids, c.ID)
	}
	return strings.Join(ids, " ")
}

func TestListCommands(t *testing.T) {
	s := openStore(t)
	c := func(id, client string, created time.Duration, st fleet.CommandStatus, by, batch string) fleet.Command {
		c := newCommand(id, client, created)
		c.Status, c.RequestedBy, c.BatchID = st, by, batch
		return c
	}
	createCommands(t, s,
		c("c1", "a1", 0, fleet.StatusCompleted, "alice", "b1"),
		c("c2", "a2", time.Minute, fleet.StatusCompleted, "alice", "b1"),
		c("c3", "a1", 2*time.Minute, fleet.StatusRunning, "bob", ""),
		c("c4", "a1", 3*time.Minute, fleet.StatusQueued, "alice", ""),
		c("c5", "a2", 3*time.Minute, fleet.StatusFailed, "bob", ""),
	)
	tests := []struct {
		name      string
		filter    fleet.CommandFilter
		wantIDs   string
		wantTotal int
	}{
		{"all, newest first", fleet.CommandFilter{}, "c5 c4 c3 c2 c1", 5},
		{"client", fleet.CommandFilter{AgentID: "a1"}, "c4 c3 c1", 3},
		{"statuses", fleet.CommandFilter{Status: []fleet.CommandStatus{fleet.StatusQueued, fleet.StatusFailed}}, "c5 c4", 2},
		{"batch", fleet.CommandFilter{BatchID: "b1"}, "c2 c1", 2},
		{"requested by", fleet.CommandFilter{RequestedBy: "bob"}, "c5 c3", 2},
		{"since is inclusive", fleet.CommandFilter{Since: at(2 * time.Minute)}, "c5 c4 c3", 3},
		{"combined", fleet.CommandFilter{AgentID: "a1", RequestedBy: "alice"}, "c4 c1", 2},
		{"page", fleet.CommandFilter{Limit: 2, Offset: 2}, "c3 c2", 5},
		{"filtered page", fleet.CommandFilter{AgentID: "a1", Limit: 1, Offset: 1}, "c3", 3},
		{"no match", fleet.CommandFilter{AgentID: "zz"}, "", 0},
	}
	for _, tt := range tests {
		got, total, err := s.ListCommands(t.Context(), tt.filter)
		if err != nil {
			t.Fatal(err)
		}
		if ids := commandIDs(got); ids != tt.wantIDs || total != tt.wantTotal {
			t.Errorf("%s: got %q total %d, want %q total %d", tt.name, ids, total, tt.wantIDs, tt.wantTotal)
		}
	}
}

func TestLiveCommands(t *testing.T) {
	s := openStore(t)
	ctx := t.Context()
	createCommands(t, s,
		newCommand("c3", "a1", 2*time.Minute),
		newCommand("c1", "a1", 0),
		newCommand("c2", "a2", time.Minute),
		newCommand("c4", "a1", 3*time.Minute),
		newCommand("c0", "a1", 0),
	)
	if err := s.FinishCommand(ctx, "c4", fleet.CommandResult{Status: fleet.StatusCompleted, At: at(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkRunning(ctx, "c3"); err != nil {
		t.Fatal(err)
	}
	for client, want := range map[string]string{"a1": "c0 c1 c3", "": "c0 c1 c2 c3", "zz": ""} {
		got, err := s.LiveCommands(ctx, client)
		if err != nil {
			t.Fatal(err)
		}
		if ids := commandIDs(got); ids != want {
			t.Errorf("LiveCommands(%q) = %q, want %q", client, ids, want)
		}
	}
}

func TestExpireCommands(t *testing.T) {
	s := openStore(t)
	ctx := t.Context()
	queued := func(id string, created, expires time.Duration) fleet.Command {
		c := newCommand(id, "a1", created)
		c.Status, c.ExpiresAt = fleet.StatusQueued, at(expires)
		return c
	}
	noExpiry := newCommand("no-expiry", "a1", 0)
	noExpiry.Status = fleet.StatusQueued
	pending := newCommand("pending", "a1", 0)
	pending.ExpiresAt = at(time.Second)
	createCommands(t, s,
		queued("late", time.Second, time.Minute),
		queued("early", 0, 2*time.Minute),
		queued("at-now", 0, time.Hour),
		queued("future", 0, 2*time.Hour),
		noExpiry, pending,
	)
	now := at(time.Hour)
	got, err := s.ExpireCommands(ctx, now)
	if err != nil {
		t.Fatal(err)
	}
	if ids := commandIDs(got); ids != "early late" {
		t.Fatalf("expired %q, want %q", ids, "early late")
	}
	want := queued("early", 0, 2*time.Minute)
	want.Status, want.Error, want.FinishedAt = fleet.StatusExpired, expiredReason, now
	if !reflect.DeepEqual(got[0], want) {
		t.Errorf("returned\n%+v\nwant\n%+v", got[0], want)
	}
	checkCommand(t, s, want)
	live, err := s.LiveCommands(ctx, "a1")
	if err != nil {
		t.Fatal(err)
	}
	if ids := commandIDs(live); ids != "at-now future no-expiry pending" {
		t.Errorf("live after expiry: %q", ids)
	}
	again, err := s.ExpireCommands(ctx, now)
	if err != nil || len(again) != 0 {
		t.Errorf("second ExpireCommands = %q, %v; want none", commandIDs(again), err)
	}
}

func TestPruneCommands(t *testing.T) {
	s := openStore(t)
	ctx := t.Context()
	createCommands(t, s,
		newCommand("old-done", "a1", 0),
		newCommand("new-done", "a1", 0),
		newCommand("old-live", "a1", 0),
		newCommand("at-cutoff", "a1", 0),
	)
	for id, finished := range map[string]time.Duration{"old-done": time.Minute, "new-done": 2 * time.Hour, "at-cutoff": time.Hour} {
		if err := s.FinishCommand(ctx, id, fleet.CommandResult{Status: fleet.StatusFailed, At: at(finished)}); err != nil {
			t.Fatal(err)
		}
	}
	terminalNoFinish := newCommand("created-failed", "a1", 0)
	terminalNoFinish.Status = fleet.StatusFailed
	createCommands(t, s, terminalNoFinish)

	n, err := s.PruneCommands(ctx, at(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Errorf("pruned %d, want 2", n)
	}
	left, _, err := s.ListCommands(ctx, fleet.CommandFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if ids := commandIDs(left); ids != "old-live new-done at-cutoff" {
		t.Errorf("left %q", ids)
	}
}
