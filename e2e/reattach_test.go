package e2e

import (
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// restartable returns the environment two runtimes share so that the
// second can re-attach to the plugins of the first: the state directory,
// and the client manager's data directory and fixed port.
func restartable(t *testing.T, port int) []string {
	return []string{"RUNTIME_STATE_DIR=" + t.TempDir(), "CLIENT_MANAGER_DATA_DIR=" + t.TempDir(),
		"CLIENT_MANAGER_PORT=" + itoa(port)}
}

// watchHealth polls url every 20ms until the returned stop is called,
// which reports how many polls did not answer 200 and how many were made.
func watchHealth(url string) (stop func() (failed, total int)) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	var failed, total int
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			if code, _ := get(url); code != http.StatusOK {
				failed++
			}
			total++
			select {
			case <-done:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	return func() (int, int) {
		close(done)
		wg.Wait()
		return failed, total
	}
}

// waitAdopted polls the plugin list until name runs with pid and returns
// how long that took since begin.
func waitAdopted(t *testing.T, r *runtimeProc, name string, pid int, begin time.Time) time.Duration {
	t.Helper()
	for {
		var list struct{ Items []pluginJSON }
		if code := r.do("GET", "/api/admin/v1/plugins", &list); code == http.StatusOK {
			for _, p := range list.Items {
				if p.Name == name && p.State == "running" && p.PID == pid {
					return time.Since(begin)
				}
			}
		}
		if time.Since(begin) > 15*time.Second {
			t.Fatalf("%s not running with pid %d 15s after the runtime started: %+v", name, pid, r.plugin(name))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// lastExitCode returns the plugin's last_exit.code, nil when it is null
// (the exit status of an adopted process is unknown).
func lastExitCode(t *testing.T, r *runtimeProc, name string) (code *int, present bool) {
	t.Helper()
	var p struct {
		LastExit *struct {
			Code *int `json:"code"`
		} `json:"last_exit"`
	}
	r.do("GET", "/api/admin/v1/plugins/"+name, &p)
	if p.LastExit == nil {
		return nil, false
	}
	return p.LastExit.Code, true
}

// cmLogsThroughStream reports whether the client manager logs through
// pluginproto's LogWriter: its lines after Serve then come over the stdio
// stream, which a re-attached runtime reads.
func cmLogsThroughStream(r *runtimeProc) bool {
	for _, l := range strings.Split(r.logs.String(), "\n") {
		if strings.Contains(l, `"plugin":"client_manager"`) && strings.Contains(l, `"stream":"stdio"`) &&
			strings.Contains(l, "client manager serving") {
			return true
		}
	}
	return false
}

func TestReattachAfterRuntimeKill(t *testing.T) {
	t.Parallel()
	port := freePort(t)
	env := restartable(t, port)
	dir := plugins(t, map[string]string{"client_manager": clientManager(), "flaky": flaky("flaky", "", "")})
	r1 := startRuntime(t, dir, env...)
	cm1 := r1.waitState(cm, "running", 20*time.Second)
	fl1 := r1.waitState("flaky", "running", 20*time.Second)
	if fi, err := os.Stat(filepath.Join(r1.state, "plugins", cm+".json")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("re-attach record: %v, %v; want mode 0600", fi, err)
	}

	stopWatch := watchHealth("http://127.0.0.1:" + itoa(port) + "/health")
	r1.kill9()
	// Logging with no runtime attached neither blocks nor kills a plugin,
	// whether through the LogWriter or straight to the broken stderr.
	if code, body := get("http://" + fl1.HTTPAddress + "/log?n=20000"); code != http.StatusOK {
		t.Fatalf("flaky logging 20000 lines with its runtime gone: %d %s", code, body)
	}
	if processDead(cm1.PID) || processDead(fl1.PID) {
		t.Fatal("a plugin died with its runtime")
	}

	begin := time.Now()
	r2 := startRuntime(t, dir, env...)
	reattach := waitAdopted(t, r2, cm, cm1.PID, begin)
	t.Logf("reattach_ms=%d", reattach.Milliseconds())
	if reattach > 2*time.Second {
		t.Errorf("re-attach took %s, want at most 2s", reattach)
	}
	if failed, total := stopWatch(); failed > 0 {
		t.Errorf("client manager /health failed %d of %d times while its runtime was replaced", failed, total)
	}
	if cm2 := r2.plugin(cm); cm2.InstanceID != cm1.InstanceID || cm2.Restarts != 0 || cm2.HTTPAddress != cm1.HTTPAddress {
		t.Errorf("adopted client manager %+v, was %+v", cm2, cm1)
	}
	r2.remember(cm1.PID)
	if fl2 := r2.waitState("flaky", "running", 10*time.Second); fl2.PID != fl1.PID {
		t.Fatalf("flaky pid %d, want the adopted %d", fl2.PID, fl1.PID)
	}
	// What flaky logged while no runtime was attached arrives now, with a
	// count of the lines that did not fit.
	r2.waitLog("flaky: log line ", 5*time.Second)
	r2.waitLog("log lines dropped", 5*time.Second)

	checkAdoptedCrash(t, r2, fl1.PID)
	checkAdoptedRestart(t, r1, r2, cm1.PID)
}

// checkAdoptedCrash kills an adopted plugin: the runtime notices within a
// second and starts a new one; the exit status is unknown.
func checkAdoptedCrash(t *testing.T, r *runtimeProc, pid int) {
	t.Helper()
	killed := time.Now()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for {
		p := r.plugin("flaky")
		if p.State != "running" || p.PID != pid {
			noticed := time.Since(killed)
			t.Logf("adopted plugin crash noticed after %s", noticed)
			if noticed > time.Second {
				t.Errorf("crash of an adopted plugin noticed after %s, want within 1s", noticed)
			}
			break
		}
		if time.Since(killed) > 5*time.Second {
			t.Fatalf("crash of the adopted flaky not noticed: %+v", p)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if p := r.waitState("flaky", "running", 10*time.Second); p.PID == pid || p.Restarts != 1 {
		t.Errorf("flaky after the crash: pid %d (killed %d), restarts %d, want a new pid and 1 restart", p.PID, pid, p.Restarts)
	}
	if code, present := lastExitCode(t, r, "flaky"); !present || code != nil {
		t.Errorf("last_exit.code %v (present %v), want null: the status of an adopted process is unknown", code, present)
	}
}

// checkAdoptedRestart restarts the adopted client manager through the
// admin API, then stops and starts it.
func checkAdoptedRestart(t *testing.T, r1, r2 *runtimeProc, pid int) {
	t.Helper()
	code, p := r2.action(cm, "restart")
	if code != http.StatusOK || p.State != "running" || p.PID == pid {
		t.Fatalf("restart of the adopted client manager: %d %+v", code, p)
	}
	if !processDead(pid) {
		t.Errorf("adopted pid %d still runs after restart", pid)
	}
	// The plugin's logs during the stop reach the runtime that adopted it.
	if cmLogsThroughStream(r1) {
		r2.waitLog("client manager draining", 5*time.Second)
	} else {
		t.Log("the client manager does not log through pluginproto.LogWriter: its logs after a re-attach are lost")
	}
	if code, p := r2.action(cm, "stop"); code != http.StatusOK || p.State != "stopped" {
		t.Fatalf("stop: %d %+v", code, p)
	}
	if _, err := os.Stat(filepath.Join(r2.state, "plugins", cm+".json")); !os.IsNotExist(err) {
		t.Errorf("re-attach record after a graceful stop: %v", err)
	}
	if code, p := r2.action(cm, "start"); code != http.StatusOK || p.State != "running" {
		t.Fatalf("start: %d %+v", code, p)
	}
}

func TestReattachRelaunchesDeadPlugin(t *testing.T) {
	t.Parallel()
	env := restartable(t, freePort(t))
	dir := plugins(t, map[string]string{"client_manager": clientManager()})
	r1 := startRuntime(t, dir, env...)
	cm1 := r1.waitState(cm, "running", 20*time.Second)
	r1.kill9()
	if err := syscall.Kill(cm1.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for !processDead(cm1.PID) {
		time.Sleep(10 * time.Millisecond)
	}
	r2 := startRuntime(t, dir, env...)
	if p := r2.waitState(cm, "running", 20*time.Second); p.PID == cm1.PID || p.InstanceID == cm1.InstanceID {
		t.Errorf("client manager %+v, want a new process", p)
	}
	r2.waitLog("not re-attaching", time.Second)
}

func TestStaleRecordSparesForeignProcess(t *testing.T) {
	t.Parallel()
	sleep := exec.Command("sleep", "60")
	sleep.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = sleep.Process.Kill()
		_ = sleep.Wait()
	})
	pid := sleep.Process.Pid
	stat, err := os.ReadFile("/proc/" + itoa(pid) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	startTime, _ := strconv.ParseUint(strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))[19], 10, 64)
	// A record naming the live sleep (right pid, start time and process
	// group), as a crashed runtime could leave behind after pid reuse.
	state := t.TempDir()
	rec, _ := json.Marshal(map[string]any{
		"version": 1, "plugin": cm, "pid": pid, "start_time": startTime,
		"binary": filepath.Join(bin, "client-manager"), "protocol": "grpc", "protocol_version": 1,
		"network": "unix", "address": "/nonexistent/plugin.sock", "instance_id": "recorded",
	})
	if err := os.MkdirAll(filepath.Join(state, "plugins"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(state, "plugins", cm+".json"), rec, 0o600); err != nil {
		t.Fatal(err)
	}

	r := startRuntime(t, plugins(t, map[string]string{"client_manager": clientManager()}), "RUNTIME_STATE_DIR="+state)
	if p := r.waitState(cm, "running", 20*time.Second); p.PID == pid {
		t.Fatalf("adopted the foreign pid %d", pid)
	}
	r.waitLog("is not the plugin's process", time.Second)
	time.Sleep(200 * time.Millisecond)
	if processDead(pid) {
		t.Fatalf("the foreign process %d was killed", pid)
	}
}

func TestDetachSignal(t *testing.T) {
	t.Parallel()
	port := freePort(t)
	env := restartable(t, port)
	dir := plugins(t, map[string]string{"client_manager": clientManager()})
	r1 := startRuntime(t, dir, env...)
	cm1 := r1.waitState(cm, "running", 20*time.Second)
	if err := r1.cmd.Process.Signal(syscall.SIGUSR2); err != nil {
		t.Fatal(err)
	}
	select {
	case <-r1.done:
	case <-time.After(10 * time.Second):
		t.Fatal("runtime still running 10s after SIGUSR2")
	}
	if code := r1.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("runtime exit code %d after SIGUSR2, want 0", code)
	}
	code, body := get("http://127.0.0.1:" + itoa(port) + "/health")
	if code != http.StatusOK || processDead(cm1.PID) {
		t.Fatalf("client manager after its runtime detached: %d %s", code, body)
	}
	begin := time.Now()
	r2 := startRuntime(t, dir, env...)
	t.Logf("re-attached after detach in %s", waitAdopted(t, r2, cm, cm1.PID, begin))
	r2.remember(cm1.PID)
}
