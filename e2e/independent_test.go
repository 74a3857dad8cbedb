package e2e

import (
	"bufio"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestAgentThroughOnePortMode enrolls and connects bin/agent through the
// runtime's port (/client-manager) and runs a command through it too.
func TestAgentThroughOnePortMode(t *testing.T) {
	t.Parallel()
	dataDir := t.TempDir()
	r := startRuntime(t, plugins(t, map[string]string{"client_manager": mounted(clientManager(), "/client-manager")}),
		"CLIENT_MANAGER_DATA_DIR="+dataDir)
	r.waitState(cm, "running", 20*time.Second)
	base := r.admin + "/client-manager"

	agentProc(t, base, dataDir, filepath.Join(t.TempDir(), "credential.json"))
	id := waitOnline(t, base, 10*time.Second)
	code, body := get(base + "/api/clients/" + id)
	if code != http.StatusOK || !strings.Contains(body, `"last_addr":"127.0.0.1:`) {
		t.Fatalf("client through the proxy = %d %s", code, body)
	}
	var cmd struct{ Status, Stdout string }
	if code := postJSON(t, base+"/api/commands/"+id, `{"command":"uname"}`, &cmd); code != http.StatusOK || cmd.Status != "completed" {
		t.Fatalf("command through the proxy = %d %+v", code, cmd)
	}
}

// TestAgentsSurviveRuntimeKill kills the runtime with SIGKILL while 100
// simulated agents are connected and commands are flowing: no agent is
// disconnected, the next runtime re-attaches to the same client manager
// within 2 s, and operator stop and restart still work afterwards.
func TestAgentsSurviveRuntimeKill(t *testing.T) {
	t.Parallel()
	port, dataDir, stateDir := freePort(t), t.TempDir(), t.TempDir()
	pluginsDir := plugins(t, map[string]string{"client_manager": clientManager()})
	env := []string{"CLIENT_MANAGER_PORT=" + itoa(port), "CLIENT_MANAGER_DATA_DIR=" + dataDir,
		"RUNTIME_STATE_DIR=" + stateDir, "CLIENT_MANAGER_ENROLL_RATE=100000"}
	first := startRuntime(t, pluginsDir, env...)
	before := first.waitState(cm, "running", 20*time.Second)
	base := "http://127.0.0.1:" + itoa(port)

	sim := startSimulator(t, base, createEnrollmentToken(t, base, 100), 100)
	online := waitOnlineCount(t, base, 100, 30*time.Second)
	flow := startCommandFlow(t, base, online)
	time.Sleep(500 * time.Millisecond)
	if err := syscall.Kill(first.cmd.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-first.done
	time.Sleep(time.Second) // commands keep flowing without a runtime
	restarted := time.Now()
	second := startRuntime(t, pluginsDir, env...)
	after := second.waitState(cm, "running", 10*time.Second)
	t.Logf("reattach_with_agents_ms=%d", time.Since(restarted).Milliseconds())
	if after.PID != before.PID {
		t.Fatalf("client manager pid %d after the runtime restart, was %d", after.PID, before.PID)
	}
	if d := time.Since(restarted); d > 2*time.Second {
		t.Errorf("re-attached after %s, want at most 2s", d)
	}
	time.Sleep(500 * time.Millisecond)
	completed, failed := flow.stop()

	if n := disconnects(t, base); n != 0 {
		t.Errorf("%d agent disconnects while the runtime was killed and restarted", n)
	}
	if got := waitOnlineCount(t, base, 100, time.Second); len(got) != 100 {
		t.Errorf("%d agents online, want 100", len(got))
	}
	t.Logf("commands completed while the runtime was killed and restarted: %d (failed %d)", completed, failed)
	if completed == 0 || failed != 0 {
		t.Errorf("commands: %d completed, %d failed; want all to complete", completed, failed)
	}

	if code, p := second.action(cm, "restart"); code != http.StatusOK || p.State != "running" || p.PID == before.PID {
		t.Fatalf("restart after re-attach = %d %+v", code, p)
	}
	waitOnlineCount(t, base, 100, 30*time.Second)
	if code, p := second.action(cm, "stop"); code != http.StatusOK || p.State != "stopped" {
		t.Fatalf("stop after re-attach = %d %+v", code, p)
	}
	_ = sim
}

// disconnects reads the client manager's count of client.disconnected
// events from /metrics.
func disconnects(t *testing.T, base string) int {
	t.Helper()
	code, body := get(base + "/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics = %d", code)
	}
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), `cm_events_total{type="client.disconnected"} `); ok {
			n, _ := strconv.Atoi(v)
			return n
		}
	}
	return 0
}

// commandFlow runs one synchronous command every 10 ms, round robin over
// the agents, until stop.
type commandFlow struct {
	completed, failed atomic.Int64
	done              chan struct{}
	wg                sync.WaitGroup
}

func startCommandFlow(t *testing.T, base string, agents []string) *commandFlow {
	f := &commandFlow{done: make(chan struct{})}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for i := 0; ; i++ {
			select {
			case <-f.done:
				return
			case <-time.After(10 * time.Millisecond):
			}
			var c struct{ Status string }
			if postJSON(t, base+"/api/commands/"+agents[i%len(agents)], `{"command":"echo","args":["x"]}`, &c) == http.StatusOK &&
				c.Status == "completed" {
				f.completed.Add(1)
			} else {
				f.failed.Add(1)
			}
		}
	}()
	return f
}

// stop ends the flow and returns how many commands completed and failed.
func (f *commandFlow) stop() (completed, failed int64) {
	close(f.done)
	f.wg.Wait()
	return f.completed.Load(), f.failed.Load()
}
