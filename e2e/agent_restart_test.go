package e2e

import (
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// standalone is a bin/client-manager started without the runtime.
type standalone struct {
	cmd  *exec.Cmd
	logs *syncBuffer
	done chan struct{} // closed once it has exited
}

// startStandalone starts bin/client-manager on 127.0.0.1:port over
// dataDir, with the extra environment entries, and returns when it
// answers /health, with the time it first did.
func startStandalone(t *testing.T, port int, dataDir string, extra ...string) (*standalone, time.Time) {
	t.Helper()
	return launchStandalone(t, exec.Command(filepath.Join(bin, "client-manager")), port, dataDir, extra...)
}

// launchStandalone is startStandalone running cmd: bin/client-manager,
// or a wrapper that executes it.
func launchStandalone(t *testing.T, cmd *exec.Cmd, port int, dataDir string, extra ...string) (*standalone, time.Time) {
	t.Helper()
	s := &standalone{cmd: cmd, logs: &syncBuffer{}, done: make(chan struct{})}
	s.cmd.Dir = t.TempDir()
	s.cmd.Env = append(baseEnv(), "CLIENT_MANAGER_HOST=127.0.0.1", "CLIENT_MANAGER_PORT="+itoa(port),
		"CLIENT_MANAGER_DATA_DIR="+dataDir)
	s.cmd.Env = append(s.cmd.Env, extra...)
	s.cmd.Stdout, s.cmd.Stderr = s.logs, s.logs
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = s.cmd.Wait()
		close(s.done)
	}()
	t.Cleanup(func() {
		_ = s.cmd.Process.Kill()
		<-s.done
		if t.Failed() {
			t.Logf("client manager output:\n%s", s.logs)
		}
	})
	probe := &http.Client{Timeout: time.Second}
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if res, err := probe.Get("http://127.0.0.1:" + itoa(port) + "/health"); err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return s, time.Now()
			}
		}
	}
	t.Fatal("client manager never answered /health")
	return nil, time.Time{}
}

// stop sends SIGTERM and waits for the exit.
func (s *standalone) stop(t *testing.T) {
	t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.done:
	case <-time.After(15 * time.Second):
		t.Fatal("client manager still running 15s after SIGTERM")
	}
}

// waitConnects polls the agent's log until it has logged n connections and
// returns when it saw the n-th.
func waitConnects(t *testing.T, logs *syncBuffer, n int, within time.Duration) time.Time {
	t.Helper()
	for deadline := time.Now().Add(within); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
		if strings.Count(logs.String(), "msg=connected") >= n {
			return time.Now()
		}
	}
	t.Fatalf("agent did not connect %d times within %s; logs:\n%s", n, within, logs)
	return time.Time{}
}

// TestAgentBackSoonAfterRestarts restarts a standalone client manager
// twice, 5 s apart (SIGTERM, which closes agents with 1001, then a new
// process on the same port and data dir): bin/agent is back within 1.5 s
// of each new process's listen.
func TestAgentBackSoonAfterRestarts(t *testing.T) {
	t.Parallel()
	port, dataDir := freePort(t), t.TempDir()
	cm, _ := startStandalone(t, port, dataDir)
	base := "http://127.0.0.1:" + itoa(port)
	_, logs := startAgentBinary(t, "--server", base, "--enroll-token", "@"+filepath.Join(dataDir, "bootstrap-token"),
		"--credential-file", filepath.Join(t.TempDir(), "credential.json"), "--allow", "uname")
	back := waitConnects(t, logs, 1, 15*time.Second)
	for i := 1; i <= 2; i++ {
		time.Sleep(time.Until(back.Add(5 * time.Second)))
		stopped := time.Now()
		cm.stop(t)
		exited := time.Now()
		var listening time.Time
		cm, listening = startStandalone(t, port, dataDir)
		back = waitConnects(t, logs, i+1, 15*time.Second)
		t.Logf("restart %d: SIGTERM->exit %dms, exit->listen %dms, listen->agent back %dms (SIGTERM->agent back %dms)",
			i, exited.Sub(stopped).Milliseconds(), listening.Sub(exited).Milliseconds(),
			back.Sub(listening).Milliseconds(), back.Sub(stopped).Milliseconds())
		if d := back.Sub(listening); d > 1500*time.Millisecond {
			t.Errorf("restart %d: agent back %s after the new client manager listened, want at most 1.5s", i, d)
		}
	}
}
