package e2e

import (
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// fileState is what a test compares of a file before and after.
type fileState struct {
	size    int64
	modTime time.Time
}

func statFile(t *testing.T, path string) fileState {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fileState{st.Size(), st.ModTime()}
}

func TestSecondClientManagerOnALiveDataDir(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	r := startRuntime(t, plugins(t, map[string]string{"client_manager": clientManager()}), "CLIENT_MANAGER_DATA_DIR="+data)
	p := r.waitState(cm, "running", 20*time.Second)
	store := filepath.Join(data, "client-manager.db")
	before := statFile(t, store)
	bootstrap, err := os.ReadFile(filepath.Join(data, "bootstrap-token"))
	if err != nil {
		t.Fatal(err)
	}
	port := freePort(t)

	start := time.Now()
	second := runIn(t, t.TempDir(), "client-manager", nil, "CLIENT_MANAGER_DATA_DIR="+data,
		"CLIENT_MANAGER_HOST=127.0.0.1", "CLIENT_MANAGER_PORT="+itoa(port), "CLIENT_MANAGER_LOG_LEVEL=debug")
	want := "client-manager: data directory " + data + " is in use: " + filepath.Join(data, "client-manager.lock") +
		" is locked by another process (pid " + strconv.Itoa(p.PID) + ")\n"
	if second.code != 1 || second.stderr != want || second.stdout != "" {
		t.Fatalf("second client manager: exit %d, stderr %q, stdout %q; want 1 and only %q",
			second.code, second.stderr, second.stdout, want)
	}
	t.Logf("second client manager refused in %v", time.Since(start).Round(time.Millisecond))
	if after := statFile(t, store); after != before {
		t.Errorf("the store changed while the second instance ran: %+v, then %+v", before, after)
	}
	if now, _ := os.ReadFile(filepath.Join(data, "bootstrap-token")); string(now) != string(bootstrap) {
		t.Error("the second instance rewrote the bootstrap token")
	}
	if code, _ := get("http://127.0.0.1:" + itoa(port) + "/health"); code != 0 {
		t.Errorf("something answers on the second instance's port: %d", code)
	}
	if code, _ := get("http://" + p.HTTPAddress + "/health"); code != http.StatusOK {
		t.Errorf("the first instance no longer serves: %d", code)
	}
	if now := r.plugin(cm); now.PID != p.PID || now.State != "running" {
		t.Errorf("the first instance changed: %+v", now)
	}
}

func TestTokenCommandBesideALiveService(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	r := startRuntime(t, plugins(t, map[string]string{"client_manager": clientManager()}), "CLIENT_MANAGER_DATA_DIR="+data)
	p := r.waitState(cm, "running", 20*time.Second)
	base := "http://" + p.HTTPAddress
	if code, _ := get(base + "/api/clients"); code != http.StatusOK {
		t.Fatalf("loopback call without any token: %d", code)
	}
	created := runIn(t, t.TempDir(), "client-manager", []string{"token", "create", "--name", "ci", "--role", "viewer"},
		"CLIENT_MANAGER_DATA_DIR="+data)
	token := strings.TrimSpace(created.stdout)
	if created.code != 0 || !strings.HasPrefix(token, "cmop_") {
		t.Fatalf("token create beside the service: exit %d, stdout %q, stderr %q", created.code, created.stdout, created.stderr)
	}
	if code, _ := get(base + "/api/clients"); code != http.StatusUnauthorized {
		t.Errorf("loopback call without a token once one exists: %d, want 401", code)
	}
	req, _ := http.NewRequest("GET", base+"/api/clients", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := httpc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Errorf("the new token on the live service: %d", res.StatusCode)
	}
}

func TestSecondRuntimeOnAStateDir(t *testing.T) {
	t.Parallel()
	dir := plugins(t, map[string]string{"client_manager": clientManager()})
	first := startRuntime(t, dir)
	p := first.waitState(cm, "running", 20*time.Second)
	addr, _ := os.ReadFile(filepath.Join(first.state, "admin.addr"))

	second := launchRuntime(t, dir, "RUNTIME_STATE_DIR="+first.state)
	select {
	case <-second.done:
	case <-time.After(10 * time.Second):
		t.Fatal("the second runtime on the same state directory is still running after 10s")
	}
	want := "is locked by another process (pid " + strconv.Itoa(first.cmd.Process.Pid) + ")"
	if code := second.cmd.ProcessState.ExitCode(); code != 1 || !strings.Contains(second.logs.String(), want) {
		t.Fatalf("second runtime: exit %d, stderr %q; want 1 and %q", code, second.logs, want)
	}
	if strings.Contains(second.logs.String(), "plugin found") {
		t.Errorf("the second runtime went on to discover plugins: %s", second.logs)
	}
	if now, _ := os.ReadFile(filepath.Join(first.state, "admin.addr")); string(now) != string(addr) {
		t.Errorf("admin.addr changed from %q to %q", addr, now)
	}
	if now := first.plugin(cm); now.PID != p.PID || now.State != "running" {
		t.Errorf("the first runtime's plugin changed: %+v, was pid %d", now, p.PID)
	}
}
