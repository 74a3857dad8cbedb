package agent

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/home-console/client-manager/pkg/agentproto"
)

func TestAllowList(t *testing.T) {
	l, err := NewAllowList("uname", " uptime ", "", "/bin/echo", "uname")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(l.Names(), ","); got != "uname,uptime,/bin/echo" {
		t.Errorf("Names = %q", got)
	}
	tests := []struct {
		command string
		allowed bool
	}{
		{"uname", true},
		{"uptime", true},
		{"/bin/echo", true},
		{"rm", false},
		{"", false},
		{"echo", false},             // only the exact path is allowed
		{"/usr/bin/uname", false},   // a path is never matched by its base name
		{"./uname", false},          // relative paths too
		{"/bin/../bin/echo", false}, // no cleaning
		{"uname\x00/bin/rm", false}, // NUL
		{"UNAME", false},            // case-sensitive
		{"uname --help", false},     // arguments are not part of the name
		{"/bin/echo/", false},       // trailing separator
		{"bin/echo", false},         // suffix of an allowed path
		{"uptime;rm -rf /", false},  // no shell, and not the name anyway
		{"sh", false},               // not listed
		{"/bin/sh", false},          // not listed
		{"uname\n", false},          // control characters
		{strings.Repeat("x", 1000), false},
	}
	for _, tt := range tests {
		err := l.Check(tt.command)
		if (err == nil) != tt.allowed {
			t.Errorf("Check(%q) = %v, want allowed=%v", tt.command, err, tt.allowed)
		}
		if err != nil && !errors.Is(err, ErrNotAllowed) {
			t.Errorf("Check(%q) error %v does not match ErrNotAllowed", tt.command, err)
		}
	}
	if err := l.Check("rm"); err.Error() != `command "rm" is not in this agent's allow-list` {
		t.Errorf("message = %q", err)
	}
	if err := (AllowList{}).Check("uname"); err == nil {
		t.Error("the zero AllowList allowed a command")
	}
	for _, bad := range []string{"bin/echo", "./uname", "../x", "a\x00b"} {
		if _, err := NewAllowList(bad); err == nil {
			t.Errorf("NewAllowList(%q) accepted a relative path or NUL", bad)
		}
	}
}

func runExec(t *testing.T, ctx context.Context, name string, args ...string) (code int, stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	code, err = ExecRunner{}.Run(ctx, Command{ID: "t", Name: name, Args: args}, &out, &errOut)
	return code, out.String(), errOut.String(), err
}

func TestExecRunnerExitCodesAndStreams(t *testing.T) {
	ctx := context.Background()
	code, out, errOut, err := runExec(t, ctx, "sh", "-c", "echo out; echo err >&2; exit 3")
	if err != nil || code != 3 || out != "out\n" || errOut != "err\n" {
		t.Errorf("got code=%d out=%q err=%q error=%v", code, out, errOut, err)
	}
	code, _, _, err = runExec(t, ctx, "true")
	if err != nil || code != 0 {
		t.Errorf("true: code=%d error=%v", code, err)
	}
	code, out, _, err = runExec(t, ctx, "echo", "a b", "$HOME", ";", "|")
	if err != nil || code != 0 || out != "a b $HOME ; |\n" {
		t.Errorf("arguments must reach the program verbatim (no shell): %q %v", out, err)
	}
	code, _, _, err = runExec(t, ctx, "no-such-program-xyz")
	if err == nil || code != -1 {
		t.Errorf("missing program: code=%d error=%v", code, err)
	}
	code, _, _, err = runExec(t, ctx, "sh", "-c", "kill -TERM $$")
	if err == nil || code != -1 || !strings.Contains(err.Error(), "terminated") {
		t.Errorf("killed by a signal: code=%d error=%v", code, err)
	}
}

// startGroupAndStop runs a shell that starts a background grandchild, then
// ends the context with stop once the grandchild's pid is known. It returns
// the grandchild's pid and how long Run took.
func startGroupAndStop(t *testing.T, ctx context.Context, stop func()) (pid int, elapsed time.Duration) {
	t.Helper()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		// The shell prints the grandchild's pid on fd 1, which is pw.
		_, err := ExecRunner{}.Run(ctx, Command{Name: "sh", Args: []string{"-c", "sleep 30 & echo $! ; sleep 30"}}, pw, pw)
		pw.Close()
		done <- err
	}()
	line := make([]byte, 32)
	n, err := pr.Read(line)
	if err != nil {
		t.Fatalf("read grandchild pid: %v", err)
	}
	pid, err = strconv.Atoi(strings.TrimSpace(string(line[:n])))
	if err != nil {
		t.Fatalf("grandchild pid %q: %v", line[:n], err)
	}
	stop()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	return pid, time.Since(start)
}

// waitGone waits until pid no longer exists (or is a zombie nobody reaped).
func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if syscall.Kill(pid, 0) != nil {
			return
		}
		stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err == nil && strings.Contains(string(stat), ") Z ") {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Errorf("grandchild %d still alive: the process group was not killed", pid)
}

func TestExecRunnerTimeoutKillsProcessGroup(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	pid, elapsed := startGroupAndStop(t, ctx, func() {})
	if elapsed > 5*time.Second {
		t.Errorf("Run took %s after a 300ms timeout", elapsed)
	}
	waitGone(t, pid)
}

func TestExecRunnerCancelKillsProcessGroup(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pid, _ := startGroupAndStop(t, ctx, cancel)
	waitGone(t, pid)
}

func TestOutcome(t *testing.T) {
	cancelled, c1 := context.WithCancelCause(context.Background())
	c1(errCommandCancelled)
	stopped, c2 := context.WithCancelCause(context.Background())
	c2(errAgentStopped)
	timedOut, c3 := context.WithTimeoutCause(context.Background(), time.Nanosecond, errCommandTimedOut)
	defer c3()
	<-timedOut.Done()
	live := context.Background()
	tests := []struct {
		name   string
		ctx    context.Context
		code   int
		err    error
		status string
	}{
		{"exit 0", live, 0, nil, agentproto.ResultCompleted},
		{"exit 0 at the deadline still completed", timedOut, 0, nil, agentproto.ResultCompleted},
		{"exit 2", live, 2, nil, agentproto.ResultFailed},
		{"start failure", live, -1, errors.New("not found"), agentproto.ResultFailed},
		{"cancel", cancelled, -1, errors.New("killed"), agentproto.ResultCancelled},
		{"agent stopping", stopped, -1, errors.New("killed"), agentproto.ResultCancelled},
		{"timeout", timedOut, -1, errors.New("killed"), agentproto.ResultTimedOut},
	}
	for _, tt := range tests {
		if status, _ := outcome(tt.ctx, tt.code, tt.err); status != tt.status {
			t.Errorf("%s: status %q, want %q", tt.name, status, tt.status)
		}
	}
}
