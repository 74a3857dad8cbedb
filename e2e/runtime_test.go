package e2e

import (
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// cm is the client manager's plugin name.
const cm = "client_manager"

func TestHappyPath(t *testing.T) {
	t.Parallel()
	r := startRuntime(t, plugins(t, map[string]string{"client_manager": clientManager()}))
	p := r.waitState(cm, "running", 20*time.Second)
	if p.PID <= 0 || p.HTTPAddress == "" || p.StartedAt == nil || p.InstanceID == "" {
		t.Fatalf("running client manager: %+v", p)
	}
	var list struct{ Items []pluginJSON }
	if code := r.do("GET", "/api/admin/v1/plugins", &list); code != http.StatusOK || len(list.Items) != 1 ||
		list.Items[0].Name != cm || list.Items[0].State != "running" || list.Items[0].PID != p.PID {
		t.Fatalf("plugin list: %d %+v", code, list)
	}
	if addr, err := os.ReadFile(filepath.Join(r.state, "admin.addr")); err != nil || "http://"+strings.TrimSpace(string(addr)) != r.admin {
		t.Errorf("admin.addr holds %q (%v), want the address of %s", addr, err, r.admin)
	}
	if code, body := get("http://" + p.HTTPAddress + "/health"); code != http.StatusOK {
		t.Fatalf("GET /health: %d %s", code, body)
	}
	code, body := get("http://" + p.HTTPAddress + "/api/clients")
	var clients map[string]json.RawMessage
	if err := json.Unmarshal([]byte(body), &clients); code != http.StatusOK || err != nil || clients["items"] == nil {
		t.Fatalf("GET /api/clients: %d %s", code, body)
	}
	var health struct {
		Status  string
		Plugins struct{ States map[string]int }
	}
	if code := r.do("GET", "/api/admin/v1/health", &health); code != http.StatusOK || health.Status != "ok" || health.Plugins.States["running"] != 1 {
		t.Fatalf("admin health: %d %+v", code, health)
	}
}

func TestKillIsRecovered(t *testing.T) {
	t.Parallel()
	port := freePort(t)
	r := startRuntime(t, plugins(t, map[string]string{"client_manager": clientManager()}), "CLIENT_MANAGER_PORT="+itoa(port))
	before := r.waitState(cm, "running", 20*time.Second)
	health := "http://127.0.0.1:" + itoa(port) + "/health"

	killed := time.Now()
	if err := syscall.Kill(before.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var recovery time.Duration
	for {
		code, body := get(health)
		if code == http.StatusOK && !strings.Contains(body, before.InstanceID) {
			recovery = time.Since(killed)
			break
		}
		if time.Since(killed) > 10*time.Second {
			t.Fatalf("no new healthy client manager 10s after kill -9 (last %d %s)", code, body)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("recovery_ms=%d", recovery.Milliseconds())
	if recovery > 2*time.Second {
		t.Errorf("recovery took %s, want at most 2s", recovery)
	}
	after := r.waitState(cm, "running", 5*time.Second)
	if after.PID == before.PID || after.PID <= 0 {
		t.Errorf("pid %d after restart, was %d", after.PID, before.PID)
	}
	if after.Restarts != 1 {
		t.Errorf("restarts = %d, want 1", after.Restarts)
	}
	if e := after.LastExit; e == nil || e.Signal == nil || *e.Signal != "SIGKILL" || e.SignalNumber != 9 {
		t.Errorf("last_exit = %+v, want signal SIGKILL (9)", e)
	}
}

func TestStopStartRestart(t *testing.T) {
	t.Parallel()
	r := startRuntime(t, plugins(t, map[string]string{"client_manager": clientManager()}))
	first := r.waitState(cm, "running", 20*time.Second)

	code, stopped := r.action(cm, "stop")
	if code != http.StatusOK || stopped.State != "stopped" || stopped.PID != 0 || stopped.HTTPAddress != "" {
		t.Fatalf("stop: %d %+v", code, stopped)
	}
	if !processGone(first.PID) {
		t.Errorf("pid %d still exists after stop", first.PID)
	}
	ln, err := net.Listen("tcp", first.HTTPAddress)
	if err != nil {
		t.Errorf("port of the stopped client manager is not free: %v", err)
	} else {
		_ = ln.Close()
	}

	var apiErr struct {
		Error struct{ Code, Message string }
	}
	if code := r.do("POST", "/api/admin/v1/plugins/"+cm+"/stop", &apiErr); code != http.StatusConflict || apiErr.Error.Code != "invalid_transition" {
		t.Errorf("second stop: %d %+v", code, apiErr)
	}
	if code := r.do("POST", "/api/admin/v1/plugins/nope/start", &apiErr); code != http.StatusNotFound || apiErr.Error.Code != "unknown_plugin" {
		t.Errorf("start of unknown plugin: %d %+v", code, apiErr)
	}
	if code := r.do("GET", "/api/admin/v1/plugins/nope", &apiErr); code != http.StatusNotFound || apiErr.Error.Code != "unknown_plugin" {
		t.Errorf("get unknown plugin: %d %+v", code, apiErr)
	}

	code, started := r.action(cm, "start")
	if code != http.StatusOK || started.State != "running" || started.PID <= 0 || started.PID == first.PID {
		t.Fatalf("start: %d %+v", code, started)
	}
	if code, _ := get("http://" + started.HTTPAddress + "/health"); code != http.StatusOK {
		t.Errorf("GET /health after start: %d", code)
	}
	if code := r.do("POST", "/api/admin/v1/plugins/"+cm+"/start", &apiErr); code != http.StatusConflict {
		t.Errorf("start of running plugin: %d %+v", code, apiErr)
	}

	code, restarted := r.action(cm, "restart")
	if code != http.StatusOK || restarted.State != "running" || restarted.PID == started.PID {
		t.Fatalf("restart: %d %+v", code, restarted)
	}
	if !processGone(started.PID) {
		t.Errorf("pid %d still exists after restart", started.PID)
	}
	if code, _ := get("http://" + restarted.HTTPAddress + "/health"); code != http.StatusOK {
		t.Errorf("GET /health after restart: %d", code)
	}
}

func TestCrashLoopIsIsolated(t *testing.T) {
	t.Parallel()
	r := startRuntime(t, plugins(t, map[string]string{
		"client_manager": clientManager(),
		"flaky": flaky("flaky", "exit-now",
			`,"restart":{"initial_backoff":"50ms","max_backoff":"200ms","max_restarts":2,"window":"1m"}`),
	}))
	f := r.waitState("flaky", "failed", 20*time.Second)
	if !strings.Contains(f.Reason, "gave up after 2 restarts") || f.Restarts != 2 {
		t.Errorf("failed plugin: reason %q, restarts %d", f.Reason, f.Restarts)
	}
	if f.LastExit == nil || f.LastExit.Code != 3 {
		t.Errorf("failed plugin last exit %+v, want code 3", f.LastExit)
	}
	p := r.waitState(cm, "running", 20*time.Second)
	if code, _ := get("http://" + p.HTTPAddress + "/health"); code != http.StatusOK {
		t.Errorf("client manager /health: %d", code)
	}
	var health struct {
		Plugins struct{ States map[string]int }
	}
	if code := r.do("GET", "/api/admin/v1/health", &health); code != http.StatusOK ||
		health.Plugins.States["failed"] != 1 || health.Plugins.States["running"] != 1 {
		t.Errorf("admin health: %d %+v", code, health)
	}
	// A failed plugin stays down until an operator starts it.
	if again := r.plugin("flaky"); again.State != "failed" || again.Restarts != 2 {
		t.Errorf("failed plugin changed on its own: %+v", again)
	}
}

func TestSIGTERMStopsEverything(t *testing.T) {
	t.Parallel()
	r := startRuntime(t, plugins(t, map[string]string{
		"client_manager": clientManager(),
		"flaky":          flaky("flaky", "", `,"dependencies":["client_manager"],"stop_timeout":"5s"`),
	}))
	c := r.waitState(cm, "running", 20*time.Second)
	f := r.waitState("flaky", "running", 20*time.Second)

	begin := time.Now()
	if err := r.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-r.done:
	case <-time.After(10 * time.Second):
		t.Fatal("runtime still running 10s after SIGTERM (client manager stop_timeout)")
	}
	t.Logf("runtime exited %s after SIGTERM", time.Since(begin))
	if code := r.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("runtime exit code %d, want 0", code)
	}
	for _, pid := range []int{c.PID, f.PID} {
		if !processGone(pid) {
			t.Errorf("plugin pid %d still exists after the runtime exited", pid)
		}
	}
	logs := r.logs.String()
	if !strings.Contains(logs, "client manager draining") || !strings.Contains(logs, "client manager stopped") {
		t.Errorf("client manager did not drain:\n%s", logs)
	}
	// Reverse dependency order: flaky depends on the client manager.
	if i, j := strings.Index(logs, `"plugin":"flaky","state":"stopping"`), strings.Index(logs, "client manager draining"); i < 0 || j < i {
		t.Errorf("flaky (index %d) was not stopped before the client manager (index %d)", i, j)
	}
}

func TestManifestDefects(t *testing.T) {
	t.Parallel()
	r := startRuntime(t, plugins(t, map[string]string{
		"client_manager": clientManager(),
		"broken":         `{"name":"broken","version":"1.0.0","command":"nope","colour":"red"}`,
		"needs_broken":   flaky("needs_broken", "", `,"dependencies":["broken"]`),
	}))
	r.waitState(cm, "running", 20*time.Second)
	if b := r.plugin("broken"); b.State != "invalid" || !strings.Contains(b.Reason, `unknown field "colour"`) {
		t.Errorf("broken: %s %q", b.State, b.Reason)
	}
	if n := r.plugin("needs_broken"); n.State != "blocked" || !strings.Contains(n.Reason, "depends on invalid plugin broken") {
		t.Errorf("needs_broken: %s %q", n.State, n.Reason)
	}
	var apiErr struct {
		Error struct{ Code, Message string }
	}
	if code := r.do("POST", "/api/admin/v1/plugins/broken/start", &apiErr); code != http.StatusConflict ||
		!strings.Contains(apiErr.Error.Message, "unknown field") {
		t.Errorf("start of invalid plugin: %d %+v", code, apiErr)
	}
}

func TestRefusesToStart(t *testing.T) {
	t.Parallel()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	dir := plugins(t, map[string]string{"client_manager": clientManager()})
	for _, tc := range []struct {
		name string
		env  []string
		want string
	}{
		{"port in use", []string{"RUNTIME_PORT=" + itoa(busy.Addr().(*net.TCPAddr).Port)}, "cannot listen on"},
		{"public without token", []string{"RUNTIME_HOST=0.0.0.0"}, "not a loopback address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := launchRuntime(t, dir, tc.env...)
			select {
			case <-r.done:
			case <-time.After(10 * time.Second):
				t.Fatal("runtime did not exit")
			}
			if code := r.cmd.ProcessState.ExitCode(); code == 0 || !strings.Contains(r.logs.String(), tc.want) {
				t.Errorf("exit code %d, logs %q, want non-zero and %q", code, r.logs, tc.want)
			}
		})
	}
}

func TestStandaloneClientManager(t *testing.T) {
	t.Parallel()
	port := freePort(t)
	cmd := exec.Command(bin + "/client-manager")
	cmd.Dir = t.TempDir()
	cmd.Env = append(baseEnv(), "CLIENT_MANAGER_HOST=127.0.0.1", "CLIENT_MANAGER_PORT="+itoa(port),
		"CLIENT_MANAGER_DATA_DIR="+t.TempDir())
	logs := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		if t.Failed() {
			t.Logf("client manager output:\n%s", logs)
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		if code, _ := get("http://127.0.0.1:" + itoa(port) + "/health"); code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("standalone client manager never answered /health")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		var exit *exec.ExitError
		if errors.As(err, &exit) || err != nil {
			t.Fatalf("client manager exited with %v, want 0", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("client manager still running 15s after SIGTERM")
	}
}
