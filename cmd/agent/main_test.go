package main

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/home-console/client-manager/cmd/agent/internal/testserver"
	"github.com/home-console/client-manager/internal/syncbuf"
	"github.com/home-console/client-manager/internal/testbin"
	"github.com/home-console/client-manager/pkg/agentproto"
)

// bin holds the agent binary built by TestMain.
var bin string

func TestMain(m *testing.M) {
	testbin.Main(m, &bin, "github.com/home-console/client-manager/cmd/agent")
}

// agentEnv is the environment without AGENT_* and XDG_STATE_HOME, with
// HOME set to home, plus extra.
func agentEnv(home string, extra ...string) []string {
	env := []string{"HOME=" + home}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AGENT_") && !strings.HasPrefix(kv, "XDG_STATE_HOME=") && !strings.HasPrefix(kv, "HOME=") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// countAccepts listens on 127.0.0.1 and counts the connections it gets.
func countAccepts(t *testing.T) (addr string, accepted *atomic.Int32) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	accepted = &atomic.Int32{}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	}()
	return ln.Addr().String(), accepted
}

// usageCase is a command line that must end at once.
type usageCase struct {
	args           []string
	code           int
	stdout, stderr string // substrings; "" means the stream must be empty
	stderrExtra    string // another substring of stderr
}

// envToken is the enrollment token in the environment of usage cases.
const envToken = "cmet_secret-from-the-environment"

// TestHelpVersionAndUsageErrors runs the built binary in an empty
// directory (also its HOME) with a complete configuration in the
// environment: help, version and usage errors exit at once with the right
// code and output, contact no server and leave the directory empty.
func TestHelpVersionAndUsageErrors(t *testing.T) {
	addr, accepted := countAccepts(t)
	for _, tc := range []usageCase{
		{args: []string{"-h"}, stdout: "-credential-file"},
		{args: []string{"--help"}, stdout: "Usage:\n  agent [flags]"},
		{args: []string{"--version"}, stdout: "agent "},
		{args: []string{"--nope"}, code: 2, stderr: "agent: flag provided but not defined: -nope", stderrExtra: "-credential-file"},
		{args: []string{"stray"}, code: 2, stderr: `agent: unexpected argument "stray"`, stderrExtra: "Usage:"},
		{args: []string{"--version", "stray"}, code: 2, stderr: `unexpected argument "stray"`, stderrExtra: "Usage:"},
		{args: []string{"--log-level", "loud"}, code: 2, stderr: "log level must be"},
		{args: []string{"simulate", "-h"}, stdout: "Usage:\n  agent simulate [flags]"},
		{args: []string{"simulate", "--help"}, stdout: "-credentials-file"},
		{args: []string{"simulate", "--version"}, stdout: "agent "},
		{args: []string{"simulate", "--nope"}, code: 2, stderr: "agent simulate: flag provided but not defined: -nope", stderrExtra: "-credentials-file"},
		{args: []string{"simulate", "stray"}, code: 2, stderr: `agent simulate: unexpected argument "stray"`, stderrExtra: "Usage:"},
		{args: []string{"simulate", "--count", "many"}, code: 2, stderr: `invalid value "many" for flag -count`, stderrExtra: "Usage:"},
		{args: []string{"simulate", "--count", "0"}, code: 2, stderr: "--count must be positive"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) { tc.run(t, "http://"+addr) })
	}
	if n := accepted.Load(); n != 0 {
		t.Errorf("%d connections to the configured server, want none", n)
	}
}

func (tc usageCase) run(t *testing.T, server string) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(bin, "agent"), tc.args...)
	cmd.Dir = dir
	cmd.Env = agentEnv(dir, "AGENT_SERVER="+server, "AGENT_ENROLL_TOKEN="+envToken)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if code := cmd.ProcessState.ExitCode(); code != tc.code || err != nil && !errors.As(err, &exit) {
		t.Fatalf("exit %d (%v), want %d; stderr:\n%s", code, err, tc.code, stderr.String())
	}
	checkStream(t, "stdout", stdout.String(), tc.stdout)
	checkStream(t, "stderr", stderr.String(), tc.stderr)
	if !strings.Contains(stderr.String(), tc.stderrExtra) {
		t.Errorf("stderr lacks %q:\n%s", tc.stderrExtra, stderr.String())
	}
	if slices.Contains(tc.args, "--version") && tc.code == 0 {
		if v := stdout.String(); !strings.HasPrefix(v, "agent ") || !strings.Contains(v, "commit ") ||
			!strings.Contains(v, runtime.Version()) || strings.Count(v, "\n") != 1 {
			t.Errorf("version line %q, want agent <version> (commit <commit>, %s)", v, runtime.Version())
		}
	}
	if strings.Contains(stdout.String()+stderr.String(), envToken) {
		t.Errorf("the enrollment token from the environment was printed:\n%s%s", stdout.String(), stderr.String())
	}
	if left := filesIn(t, dir); len(left) > 0 {
		t.Errorf("left files behind: %v", left)
	}
}

func checkStream(t *testing.T, name, got, want string) {
	t.Helper()
	if want == "" && got != "" {
		t.Errorf("%s not empty:\n%s", name, got)
	}
	if !strings.Contains(got, want) {
		t.Errorf("%s lacks %q:\n%s", name, want, got)
	}
}

// filesIn lists everything under dir, recursively.
func filesIn(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(path string, _ fs.DirEntry, err error) error {
		if path != dir {
			out = append(out, path)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// agentProc is a running bin/agent.
type agentProc struct {
	cmd    *exec.Cmd
	stderr *syncbuf.Buffer
	done   chan struct{} // closed once it has exited
}

// startAgent runs bin/agent with args until the test ends.
func startAgent(t *testing.T, dir string, args ...string) *agentProc {
	t.Helper()
	p := &agentProc{cmd: exec.Command(filepath.Join(bin, "agent"), args...), stderr: &syncbuf.Buffer{}, done: make(chan struct{})}
	p.cmd.Dir = dir
	p.cmd.Env = agentEnv(dir)
	p.cmd.Stderr = p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("agent %v:\n%s", args, p.stderr)
		}
	})
	return p
}

// wait waits for the agent to exit and returns its exit code.
func (p *agentProc) wait(t *testing.T, within time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(within):
		t.Fatalf("agent still running after %s; stderr:\n%s", within, p.stderr)
		return -1
	}
}

// TestTwoAgentsInOneDirectory runs real agents with their credential
// files in one directory: a second agent on the same credential is
// refused, naming the first one's pid, and never replays its journal; an
// agent with another credential runs beside it with a journal of its own.
func TestTwoAgentsInOneDirectory(t *testing.T) {
	srv := testserver.New(t)
	dir := t.TempDir()
	agentArgs := func(cred string) []string {
		return []string{"--server", srv.URL, "--enroll-token", srv.Token, "--allow", "echo",
			"--credential-file", filepath.Join(dir, cred)}
	}
	first := startAgent(t, dir, agentArgs("a.json")...)
	srv.WaitConnected(t, 1, 10*time.Second)

	second := startAgent(t, dir, agentArgs("a.json")...)
	if code := second.wait(t, 10*time.Second); code != 1 {
		t.Fatalf("second agent on the same credential exited %d, want 1", code)
	}
	msg := second.stderr.String()
	for _, want := range []string{"already running", "pid " + strconv.Itoa(first.cmd.Process.Pid), filepath.Join(dir, "a.json")} {
		if !strings.Contains(msg, want) {
			t.Errorf("refusal lacks %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "journal replayed") || strings.Contains(msg, "msg=connected") {
		t.Errorf("the refused agent replayed the journal or connected:\n%s", msg)
	}

	startAgent(t, dir, agentArgs("b.json")...)
	srv.WaitConnected(t, 2, 10*time.Second)
	if n := srv.Enrolled(); n != 2 {
		t.Fatalf("%d enrollments, want 2 (a.json once, b.json once)", n)
	}
	for _, id := range []string{"ag1", "ag2"} {
		req := agentproto.CommandRequest{CommandID: "cmd-of-" + id, Command: "echo", Args: []string{id}, TimeoutMS: 5000}
		if err := srv.Send(id, agentproto.TypeCommandRequest, req); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 {
		select {
		case res := <-srv.Results():
			if res.Status != agentproto.ResultCompleted {
				t.Errorf("result %+v", res)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("no result within 10s")
		}
	}
	for own, other := range map[string]string{"ag1": "ag2", "ag2": "ag1"} {
		b, err := os.ReadFile(filepath.Join(dir, "journal-"+own+".jsonl"))
		if err != nil || !bytes.Contains(b, []byte("cmd-of-"+own)) || bytes.Contains(b, []byte("cmd-of-"+other)) {
			t.Errorf("journal of %s (%v):\n%s", own, err, b)
		}
	}
}

// TestTerminalLeftoversKilledAfterKill9 kills a real agent with SIGKILL
// while its terminal runs a job that ignores the hangup: the job outlives
// the agent, and the next agent started with the same credential kills it.
func TestTerminalLeftoversKilledAfterKill9(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("needs /proc")
	}
	srv := testserver.New(t)
	srv.Welcome.Features = []string{agentproto.FeatureStreams}
	dir := t.TempDir()
	args := []string{"--server", srv.URL, "--enroll-token", srv.Token, "--credential-file", filepath.Join(dir, "cred.json"),
		"--allow-terminal", "--terminal-shell", "/bin/sh"}
	first := startAgent(t, dir, args...)
	srv.WaitConnected(t, 1, 10*time.Second)
	open := agentproto.StreamOpen{StreamID: 1, Kind: agentproto.StreamTerminal}
	if err := srv.Send("ag1", agentproto.TypeStreamOpen, open); err != nil {
		t.Fatal(err)
	}
	pidFile := filepath.Join(dir, "job.pid")
	job := "set -m; (trap '' HUP; exec sleep 300) & echo $! > " + pidFile + "\n"
	if err := srv.SendData("ag1", 1, []byte(job)); err != nil {
		t.Fatal(err)
	}
	pid := waitPIDFile(t, pidFile)
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	if _, err := os.Stat(filepath.Join(dir, "terminals-ag1.json")); err != nil {
		t.Fatalf("no terminal state file: %v", err)
	}

	_ = first.cmd.Process.Kill()
	first.wait(t, 10*time.Second)
	time.Sleep(300 * time.Millisecond) // the hangup reaches the session
	if !processAlive(pid) {
		t.Fatal("the job died with the agent; the test needs it to survive")
	}
	startAgent(t, dir, args...)
	deadline := time.Now().Add(10 * time.Second)
	for processAlive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("job %d still alive 10s after the agent restarted", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func waitPIDFile(t *testing.T, path string) int {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		b, err := os.ReadFile(path)
		if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && perr == nil && pid > 0 {
			return pid
		}
	}
	t.Fatalf("no pid in %s", path)
	return 0
}

// processAlive reports whether pid exists and is not a zombie.
func processAlive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	f := bytes.Fields(b[bytes.LastIndexByte(b, ')')+1:])
	return len(f) > 0 && f[0][0] != 'Z' && f[0][0] != 'X'
}
