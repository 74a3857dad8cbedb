package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// chaosAgents is how many simulated agents stay connected; chaosOffline
// more are enrolled but never connect, so commands queue for them.
const (
	chaosAgents  = 1000
	chaosOffline = 50
	chaosKills   = 3
)

// TestChaosNoCommandLost runs 1,000 simulated agents and a stream of
// commands (some queued for offline agents) while the client manager is
// killed with SIGKILL several times. Every accepted command must end in
// exactly one terminal state, be in the store, and run at most once.
func TestChaosNoCommandLost(t *testing.T) {
	t.Parallel()
	port := freePort(t)
	dataDir := t.TempDir()
	r := startRuntime(t, plugins(t, map[string]string{"client_manager": clientManager()}),
		"CLIENT_MANAGER_PORT="+itoa(port), "CLIENT_MANAGER_DATA_DIR="+dataDir,
		"CLIENT_MANAGER_ENROLL_RATE=1000000", "CLIENT_MANAGER_LOG_LEVEL=warn")
	r.waitState(cm, "running", 20*time.Second)
	base := "http://127.0.0.1:" + itoa(port)

	token := createEnrollmentToken(t, base, chaosAgents+chaosOffline)
	offline := make([]string, chaosOffline)
	for i := range offline {
		offline[i] = enrollAgent(t, base, token, fmt.Sprintf("offline-%d", i))
	}
	sim := startSimulator(t, base, token, chaosAgents)
	online := waitOnlineCount(t, base, chaosAgents, 60*time.Second)

	accepted := streamCommands(t, r, base, online, offline)
	states := waitAllTerminal(t, base, accepted, 90*time.Second)
	t.Logf("chaos: %d kills, %d commands accepted, terminal states %v", chaosKills, len(accepted), states)

	sum := sim.stop(t)
	t.Logf("simulator: %s", sum)
	var s struct {
		Commands   int64 `json:"commands"`
		Duplicates int64 `json:"duplicate_executions"`
	}
	if err := json.Unmarshal([]byte(sum), &s); err != nil {
		t.Fatalf("simulator summary %q: %v", sum, err)
	}
	if s.Duplicates != 0 {
		t.Errorf("%d commands ran twice on an agent", s.Duplicates)
	}
	if ran := int64(states["completed"] + states["failed"]); s.Commands == 0 || ran > s.Commands {
		t.Errorf("the store has %d commands that ran, the agents executed %d", ran, s.Commands)
	}
}

// simulator is a running `agent simulate`.
type simulator struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
}

func startSimulator(t *testing.T, base, token string, count int) *simulator {
	t.Helper()
	cmd := exec.Command(filepath.Join(bin, "agent"), "simulate", "--server", base, "--enroll-token", token,
		"--count", itoa(count), "--credentials-file", filepath.Join(t.TempDir(), "creds.jsonl"),
		"--connect-rate", "0", "--min-backoff", "100ms", "--max-backoff", "2s", "--stats-interval", "0")
	cmd.Env = baseEnv()
	s := &simulator{cmd: cmd, out: &syncBuffer{}, done: make(chan struct{})}
	logs := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = s.out, logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = cmd.Wait(); close(s.done) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-s.done
		if t.Failed() {
			t.Logf("simulator stderr:\n%s", logs)
		}
	})
	return s
}

// stop ends the simulator with SIGTERM and returns its JSON summary.
func (s *simulator) stop(t *testing.T) string {
	t.Helper()
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(20 * time.Second):
		t.Fatal("simulator did not stop on SIGTERM")
	}
	return strings.TrimSpace(s.out.String())
}

func postJSON(t *testing.T, url, body string, out any) int {
	t.Helper()
	return postJSONAuth(t, url, "", body, out)
}

// postJSONAuth is postJSON with an operator token ("" sends none).
func postJSONAuth(t *testing.T, url, token, body string, out any) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatalf("request: %v", err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := httpc.Do(req)
	if err != nil {
		return 0
	}
	defer res.Body.Close()
	if out != nil {
		_ = json.NewDecoder(res.Body).Decode(out)
	}
	return res.StatusCode
}

func createEnrollmentToken(t *testing.T, base string, uses int) string {
	t.Helper()
	var out struct{ Token string }
	if code := postJSON(t, base+"/api/enrollment-tokens", fmt.Sprintf(`{"name":"chaos","uses":%d}`, uses), &out); code != http.StatusCreated {
		t.Fatalf("create enrollment token = %d", code)
	}
	return out.Token
}

func enrollAgent(t *testing.T, base, token, name string) string {
	t.Helper()
	var out struct {
		AgentID string `json:"agent_id"`
	}
	if code := postJSON(t, base+"/api/enroll", `{"token":"`+token+`","name":"`+name+`"}`, &out); code != http.StatusCreated {
		t.Fatalf("enroll %s = %d", name, code)
	}
	return out.AgentID
}

// waitOnlineCount waits until n agents are online and returns their ids.
func waitOnlineCount(t *testing.T, base string, n int, timeout time.Duration) []string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		code, body := get(base + "/api/clients?status=online&limit=1000")
		var l clientList
		if code == http.StatusOK && json.Unmarshal([]byte(body), &l) == nil && l.Total >= n {
			ids := make([]string, len(l.Items))
			for i, c := range l.Items {
				ids[i] = c.ID
			}
			return ids
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d agents online after %s", l.Total, n, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// streamCommands submits commands for about 12 s from 4 workers while the
// client manager is killed chaosKills times at random moments, and returns
// the ids of the accepted (2xx) commands.
func streamCommands(t *testing.T, r *runtimeProc, base string, online, offline []string) []string {
	t.Helper()
	var (
		mu       sync.Mutex
		accepted []string
		wg       sync.WaitGroup
	)
	stop := make(chan struct{})
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				id, ok := submitRandom(base, online, offline)
				if ok {
					mu.Lock()
					accepted = append(accepted, id)
					mu.Unlock()
				}
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	for i := 0; i < chaosKills; i++ {
		time.Sleep(time.Duration(2000+rand.IntN(2000)) * time.Millisecond)
		p := r.plugin(cm)
		if p.PID > 0 {
			_ = syscall.Kill(p.PID, syscall.SIGKILL)
		}
		r.waitState(cm, "running", 20*time.Second)
	}
	time.Sleep(2 * time.Second)
	close(stop)
	wg.Wait()
	return accepted
}

// submitRandom posts one async command: mostly quick ones to online
// agents, some long enough to be in flight during a kill, some queued for
// offline agents with a short TTL.
func submitRandom(base string, online, offline []string) (string, bool) {
	var target, body string
	switch n := rand.IntN(10); {
	case n == 0:
		target = offline[rand.IntN(len(offline))]
		body = `{"command":"echo","args":["queued"],"queue_if_offline":true,"ttl":"3s"}`
	case n < 3:
		target = online[rand.IntN(len(online))]
		body = `{"command":"sleep","args":["0.5"],"timeout":"5s"}`
	case n < 4:
		target = online[rand.IntN(len(online))]
		body = `{"command":"false","timeout":"5s"}`
	default:
		target = online[rand.IntN(len(online))]
		body = `{"command":"echo","args":["chaos"],"timeout":"5s"}`
	}
	res, err := httpc.Post(base+"/api/commands/"+target+"/async", "application/json", bytes.NewReader([]byte(body)))
	if err != nil {
		return "", false
	}
	defer res.Body.Close()
	var cmd struct{ ID string }
	if res.StatusCode != http.StatusAccepted || json.NewDecoder(res.Body).Decode(&cmd) != nil || cmd.ID == "" {
		return "", false
	}
	return cmd.ID, true
}

// waitAllTerminal waits until every id is stored in a terminal state and
// returns the count per state.
func waitAllTerminal(t *testing.T, base string, ids []string, timeout time.Duration) map[string]int {
	t.Helper()
	terminal := map[string]bool{"completed": true, "failed": true, "cancelled": true, "timed_out": true, "expired": true}
	final := map[string]string{}
	deadline := time.Now().Add(timeout)
	for {
		var pending []string
		for _, id := range ids {
			if _, done := final[id]; done {
				continue
			}
			code, body := get(base + "/api/commands/" + id)
			var c struct{ Status string }
			switch {
			case code == http.StatusNotFound:
				t.Fatalf("accepted command %s is missing from the store", id)
			case code == http.StatusOK && json.Unmarshal([]byte(body), &c) == nil && terminal[c.Status]:
				final[id] = c.Status
			default:
				pending = append(pending, id)
			}
		}
		if len(pending) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d accepted commands not terminal after %s, e.g. %s", len(pending), len(ids), timeout, pending[0])
		}
		time.Sleep(500 * time.Millisecond)
	}
	counts := map[string]int{}
	for _, st := range final {
		counts[st]++
	}
	if os.Getenv("CHAOS_VERBOSE") != "" {
		t.Logf("final states: %v", final)
	}
	return counts
}
