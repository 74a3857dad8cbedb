package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// agentProc runs bin/agent against the client manager at server,
// enrolling with the bootstrap token in dataDir on first start.
func agentProc(t *testing.T, server, dataDir, credFile string) *exec.Cmd {
	t.Helper()
	cmd, _ := startAgentBinary(t, "--server", server,
		"--enroll-token", "@"+filepath.Join(dataDir, "bootstrap-token"),
		"--credential-file", credFile, "--allow", "uname,sleep", "--labels", "site=e2e")
	return cmd
}

// startAgentBinary runs bin/agent with args in its own process group until
// the test ends, and returns it with its captured stderr (shown if the
// test fails).
func startAgentBinary(t *testing.T, args ...string) (*exec.Cmd, *syncBuffer) {
	t.Helper()
	cmd := exec.Command(filepath.Join(bin, "agent"), args...)
	cmd.Env = baseEnv()
	logs := &syncBuffer{}
	cmd.Stderr = logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("agent logs:\n%s", logs)
		}
	})
	return cmd, logs
}

// clientList is the part of GET /api/clients the tests read.
type clientList struct {
	Items []struct {
		ID       string `json:"id"`
		Status   string `json:"status"`
		Hostname string `json:"hostname"`
		OS       string `json:"os"`
		Arch     string `json:"arch"`
	} `json:"items"`
	Total int `json:"total"`
}

func listClients(t *testing.T, base string) clientList {
	t.Helper()
	code, body := get(base + "/api/clients")
	var l clientList
	if code != http.StatusOK || json.Unmarshal([]byte(body), &l) != nil {
		t.Fatalf("GET /api/clients = %d %s", code, body)
	}
	return l
}

// waitOnline polls until exactly one client is listed online and returns
// its id.
func waitOnline(t *testing.T, base string, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if code, body := get(base + "/api/clients?status=online"); code == http.StatusOK {
			var l clientList
			if json.Unmarshal([]byte(body), &l) == nil && l.Total == 1 {
				return l.Items[0].ID
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no agent online after %s: %+v", timeout, listClients(t, base))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestAgentEndToEnd is the README's walk-through: the runtime starts the
// client manager, bin/agent joins with the bootstrap token, a command runs
// through the REST API, and after the client manager is killed the agent
// comes back by itself with the same identity and the history kept.
func TestAgentEndToEnd(t *testing.T) {
	t.Parallel()
	port := freePort(t)
	dataDir := t.TempDir()
	r := startRuntime(t, plugins(t, map[string]string{"client_manager": clientManager()}),
		"CLIENT_MANAGER_PORT="+itoa(port), "CLIENT_MANAGER_DATA_DIR="+dataDir)
	before := r.waitState(cm, "running", 20*time.Second)
	base := "http://127.0.0.1:" + itoa(port)

	agentProc(t, base, dataDir, filepath.Join(t.TempDir(), "credential.json"))
	id := waitOnline(t, base, 10*time.Second)
	l := listClients(t, base)
	if c := l.Items[0]; c.Hostname == "" || c.OS != "linux" || c.Arch == "" {
		t.Fatalf("client lacks host facts: %+v", c)
	}

	res, err := httpc.Post(base+"/api/commands/"+id, "application/json", strings.NewReader(`{"command":"uname","args":["-a"]}`))
	if err != nil {
		t.Fatal(err)
	}
	var cmd struct {
		ID       string `json:"id"`
		Status   string `json:"status"`
		ExitCode *int   `json:"exit_code"`
		Stdout   string `json:"stdout"`
	}
	if err := json.NewDecoder(res.Body).Decode(&cmd); err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK || cmd.Status != "completed" || cmd.ExitCode == nil || *cmd.ExitCode != 0 ||
		!strings.HasPrefix(cmd.Stdout, "Linux") {
		t.Fatalf("uname -a = %d %+v", res.StatusCode, cmd)
	}

	killed := time.Now()
	if err := syscall.Kill(before.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitGone(t, base, id)
	if again := waitOnline(t, base, 15*time.Second); again != id {
		t.Fatalf("agent came back as %s, was %s", again, id)
	}
	t.Logf("agent_back_online_ms=%d (after kill -9 of the client manager)", time.Since(killed).Milliseconds())
	if d := time.Since(killed); d > 5*time.Second {
		t.Errorf("agent back online after %s, want at most 5s", d)
	}
	code, body := get(base + "/api/commands?client_id=" + id)
	if code != http.StatusOK || !strings.Contains(body, cmd.ID) {
		t.Fatalf("history after restart = %d %s, want %s", code, body, cmd.ID)
	}

	restarted := time.Now()
	if code, _ := r.action(cm, "restart"); code != http.StatusOK {
		t.Fatalf("restart = %d", code)
	}
	if again := waitOnline(t, base, 15*time.Second); again != id {
		t.Fatalf("agent came back as %s, was %s", again, id)
	}
	t.Logf("agent_back_online_ms=%d (after an admin API restart)", time.Since(restarted).Milliseconds())
}

// waitGone waits until the old client manager no longer answers as online
// for id (it is dead, or the new one has not seen the agent yet).
func waitGone(t *testing.T, base, id string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		code, body := get(base + "/api/clients/" + id)
		if code != http.StatusOK || !strings.Contains(body, `"status":"online"`) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}
