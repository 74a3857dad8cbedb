// Package e2e runs the built binaries as real processes: the runtime, the
// client manager it launches, and a misbehaving test plugin.
package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net"
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

	"github.com/home-console/client-manager/internal/syncbuf"
	"github.com/home-console/client-manager/internal/testbin"
)

// bin holds the binaries built by TestMain.
var bin string

func TestMain(m *testing.M) {
	testbin.Main(m, &bin,
		"github.com/home-console/client-manager/cmd/runtime",
		"github.com/home-console/client-manager/cmd/client-manager",
		"github.com/home-console/client-manager/cmd/agent",
		"github.com/home-console/client-manager/e2e/testdata/plugins/flaky")
}

// httpc is the client every test uses; no request may hang a test.
var httpc = &http.Client{Timeout: 5 * time.Second}

// plugins writes manifests (directory name -> JSON) into a new plugins
// directory.
func plugins(t *testing.T, manifests map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for dir, body := range manifests {
		if err := os.MkdirAll(filepath.Join(root, dir), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, dir, "plugin.json"), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// clientManager is the client manager's manifest, pointing at the built
// binary.
func clientManager() string {
	return `{"name":"client_manager","version":"0.1.0","command":"` + filepath.Join(bin, "client-manager") + `",
		"restart":{"policy":"always","initial_backoff":"250ms","max_backoff":"30s","max_restarts":5,"window":"60s"},
		"stop_timeout":"10s"}`
}

// flaky is the manifest of the test plugin in mode.
func flaky(name, mode, extra string) string {
	return `{"name":"` + name + `","version":"0.0.1","command":"` + filepath.Join(bin, "flaky") + `",
		"env":{"FLAKY_MODE":"` + mode + `","FLAKY_NAME":"` + name + `"}` + extra + `}`
}

// runtimeProc is a runtime started by a test.
type runtimeProc struct {
	t     *testing.T
	cmd   *exec.Cmd
	admin string // base URL of the admin API
	state string // RUNTIME_STATE_DIR
	token string // RUNTIME_ADMIN_TOKEN, sent by do
	logs  *syncBuffer
	done  chan struct{} // closed once the process has been waited for

	mu   sync.Mutex
	pids map[int]bool // every plugin pid seen, killed on cleanup
}

// baseEnv is the test's environment without RUNTIME_* and
// CLIENT_MANAGER_* variables.
func baseEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "RUNTIME_") && !strings.HasPrefix(kv, "CLIENT_MANAGER_") {
			env = append(env, kv)
		}
	}
	return env
}

// startRuntime starts bin/runtime over pluginsDir with RUNTIME_PORT=0 and
// CLIENT_MANAGER_PORT=0 (extra entries override) and waits for its admin
// address. The runtime and every plugin it started are gone when the test
// ends.
func startRuntime(t *testing.T, pluginsDir string, extra ...string) *runtimeProc {
	t.Helper()
	r := launchRuntime(t, pluginsDir, extra...)
	addr, err := r.waitAdminAddr(15 * time.Second)
	if err != nil {
		t.Fatalf("runtime did not report its admin address: %v\n%s", err, r.logs)
	}
	r.admin = "http://" + addr
	return r
}

// launchRuntime starts the runtime without waiting for anything.
func launchRuntime(t *testing.T, pluginsDir string, extra ...string) *runtimeProc {
	t.Helper()
	cmd := exec.Command(filepath.Join(bin, "runtime"))
	cmd.Dir = t.TempDir()
	state := t.TempDir()
	cmd.Env = append(baseEnv(),
		"RUNTIME_PORT=0", "RUNTIME_LOG_FORMAT=json", "RUNTIME_PLUGINS_DIR="+pluginsDir,
		"RUNTIME_STATE_DIR="+state, "RUNTIME_SHUTDOWN_TIMEOUT=20s",
		"CLIENT_MANAGER_HOST=127.0.0.1", "CLIENT_MANAGER_PORT=0", "CLIENT_MANAGER_DATA_DIR="+t.TempDir())
	cmd.Env = append(cmd.Env, extra...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	r := &runtimeProc{t: t, cmd: cmd, state: state, logs: &syncBuffer{}, done: make(chan struct{}), pids: map[int]bool{}}
	for _, kv := range extra {
		if v, ok := strings.CutPrefix(kv, "RUNTIME_STATE_DIR="); ok {
			r.state = v
		}
		if v, ok := strings.CutPrefix(kv, "RUNTIME_ADMIN_TOKEN="); ok {
			r.token = v
		}
	}
	cmd.Stderr = r.logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(r.done)
		_ = cmd.Wait()
	}()
	t.Cleanup(r.cleanup)
	return r
}

// cleanup stops the runtime (SIGTERM, SIGKILL after 10s), kills every
// plugin process group seen in case the runtime could not, and shows the
// logs of a failed test.
func (r *runtimeProc) cleanup() {
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL)
		<-r.done
	}
	r.mu.Lock()
	for pid := range r.pids {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
	}
	r.mu.Unlock()
	if r.t.Failed() {
		r.t.Logf("runtime logs:\n%s", r.logs)
	}
}

// waitAdminAddr waits for the "admin API listening" log line.
func (r *runtimeProc) waitAdminAddr(timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		sc := bufio.NewScanner(strings.NewReader(r.logs.String()))
		for sc.Scan() {
			var line struct{ Msg, Addr string }
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "admin API listening" {
				return line.Addr, nil
			}
		}
		select {
		case <-r.done:
			return "", errors.New("runtime exited: " + r.cmd.ProcessState.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	return "", errors.New("timed out")
}

// pluginJSON is the part of the admin API's plugin object tests read.
type pluginJSON struct {
	Name        string  `json:"name"`
	State       string  `json:"state"`
	Reason      string  `json:"reason"`
	PID         int     `json:"pid"`
	HTTPAddress string  `json:"http_address"`
	StartedAt   *string `json:"started_at"`
	Restarts    int     `json:"restarts"`
	LastError   string  `json:"last_error"`
	InstanceID  string  `json:"instance_id"`
	Health      struct {
		Ready               bool   `json:"ready"`
		Status              string `json:"status"`
		LastError           string `json:"last_error"`
		ConsecutiveFailures int    `json:"consecutive_failures"`
	} `json:"health"`
	LastExit *struct {
		Code         int     `json:"code"`
		Signal       *string `json:"signal"`
		SignalNumber int     `json:"signal_number"`
	} `json:"last_exit"`
}

// do calls the admin API and decodes the answer into out (if not nil).
// A POST carries Content-Type: application/json, as the admin API
// requires of state-changing requests without a token.
func (r *runtimeProc) do(method, path string, out any) int {
	r.t.Helper()
	req, err := http.NewRequest(method, r.admin+path, nil)
	if err != nil {
		r.t.Fatal(err)
	}
	if method == http.MethodPost {
		req.Header.Set("Content-Type", "application/json")
	}
	if r.token != "" {
		req.Header.Set("Authorization", "Bearer "+r.token)
	}
	res, err := httpc.Do(req)
	if err != nil {
		r.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	if out != nil {
		if err := json.Unmarshal(body, out); err != nil {
			r.t.Fatalf("%s %s: %d %q: %v", method, path, res.StatusCode, body, err)
		}
	}
	return res.StatusCode
}

// plugin returns the named plugin, remembering its pid for cleanup.
func (r *runtimeProc) plugin(name string) pluginJSON {
	r.t.Helper()
	var p pluginJSON
	if code := r.do("GET", "/api/admin/v1/plugins/"+name, &p); code != http.StatusOK {
		r.t.Fatalf("GET plugin %s: %d", name, code)
	}
	r.remember(p.PID)
	return p
}

// action posts start, stop or restart for the named plugin.
func (r *runtimeProc) action(name, action string) (int, pluginJSON) {
	r.t.Helper()
	var p pluginJSON
	code := r.do("POST", "/api/admin/v1/plugins/"+name+"/"+action, &p)
	r.remember(p.PID)
	return code, p
}

func (r *runtimeProc) remember(pid int) {
	if pid > 0 {
		r.mu.Lock()
		r.pids[pid] = true
		r.mu.Unlock()
	}
}

// waitState polls the named plugin until it is in state want.
func (r *runtimeProc) waitState(name, want string, timeout time.Duration) pluginJSON {
	r.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		p := r.plugin(name)
		if p.State == want {
			return p
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("plugin %s is %s (reason %q, last error %q), want %s", name, p.State, p.Reason, p.LastError, want)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// get fetches url and returns the status and body ("" on a transport
// error).
func get(url string) (int, string) {
	res, err := httpc.Get(url)
	if err != nil {
		return 0, ""
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(body)
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// processGone reports whether pid no longer exists.
func processGone(pid int) bool {
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

// processDead reports whether pid no longer runs: gone, or a zombie. A
// plugin whose runtime was killed is re-parented to an init that may
// never reap it.
func processDead(pid int) bool {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	return len(f) > 0 && (f[0] == "Z" || f[0] == "X")
}

// kill9 kills the runtime with SIGKILL (its plugins keep running) and
// waits until it is gone.
func (r *runtimeProc) kill9() {
	r.t.Helper()
	if err := r.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		r.t.Fatal(err)
	}
	select {
	case <-r.done:
	case <-time.After(10 * time.Second):
		r.t.Fatal("runtime still running 10s after SIGKILL")
	}
}

// waitLog waits until the runtime's logs contain substr.
func (r *runtimeProc) waitLog(substr string, timeout time.Duration) {
	r.t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(r.logs.String(), substr) {
		if time.Now().After(deadline) {
			r.t.Fatalf("runtime logs do not contain %q after %s", substr, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// syncBuffer captures output written from several goroutines.
type syncBuffer = syncbuf.Buffer

// itoa is strconv.Itoa, for building environment entries.
func itoa(n int) string { return strconv.Itoa(n) }
