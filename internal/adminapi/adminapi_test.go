package adminapi

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/home-console/client-manager/internal/manifest"
	"github.com/home-console/client-manager/internal/pluginstate"
	"github.com/home-console/client-manager/internal/supervisor"
	"github.com/home-console/client-manager/internal/testbin"
)

// binDir holds the test plugin, built once by TestMain.
var binDir string

// flakyBin is the test plugin's path.
func flakyBin() string { return filepath.Join(binDir, "flaky") }

func TestMain(m *testing.M) {
	testbin.Main(m, &binDir, "github.com/home-console/client-manager/e2e/testdata/plugins/flaky")
}

// newServer lays out a plugins directory with a working plugin "good",
// an invalid one and a disabled one, and serves the admin API over it.
func newServer(t *testing.T, token string) *httptest.Server {
	t.Helper()
	root := t.TempDir()
	write := func(dir, body string) {
		if err := os.MkdirAll(filepath.Join(root, dir), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, dir, manifest.FileName), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("good", `{"name":"good","version":"1.0.0","command":"`+flakyBin()+`","stop_timeout":"5s"}`)
	write("broken", `{"name":"broken","version":"1.0.0","command":"`+flakyBin()+`","colour":"red"}`)
	write("off", `{"name":"off","version":"1.0.0","command":"`+flakyBin()+`","enabled":false}`)
	set, err := manifest.Discover(root)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	g := supervisor.NewGroup(set, supervisor.Options{}, log)
	ctx, cancel := context.WithCancel(context.Background())
	g.Run(ctx)
	srv := httptest.NewServer(New(g, Config{Token: token, Version: "9.9.9", StartedAt: time.Now()}, log))
	t.Cleanup(func() {
		srv.Close()
		sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer scancel()
		g.StopAll(sctx)
		cancel()
		g.Wait()
	})
	return srv
}

// call makes a request and decodes the JSON answer into a map.
func call(t *testing.T, srv *httptest.Server, method, path, token string) (int, map[string]any) {
	t.Helper()
	auth := ""
	if token != "" {
		auth = "Bearer " + token
	}
	return callAuth(t, srv, method, path, auth)
}

// callAuth is call with the Authorization header auth ("" for none).
func callAuth(t *testing.T, srv *httptest.Server, method, path, auth string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	if method == "POST" {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	var out map[string]any
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatalf("%s %s: %d, body %q is not JSON: %v", method, path, res.StatusCode, body, err)
	}
	return res.StatusCode, out
}

func errorCode(body map[string]any) string {
	e, _ := body["error"].(map[string]any)
	code, _ := e["code"].(string)
	return code
}

func TestListAndGet(t *testing.T) {
	srv := newServer(t, "")
	status, body := call(t, srv, "GET", "/api/admin/v1/plugins", "")
	items, _ := body["items"].([]any)
	if status != http.StatusOK || len(items) != 3 {
		t.Fatalf("list: %d %v", status, body)
	}
	states := map[string]string{}
	for _, it := range items {
		p := it.(map[string]any)
		states[p["name"].(string)] = p["state"].(string)
		for _, field := range []string{"version", "description", "pid", "http_address", "started_at", "uptime_seconds",
			"restarts", "last_exit", "last_error", "health", "dependencies", "instance_id", "manifest", "reason", "mount"} {
			if _, ok := p[field]; !ok {
				t.Errorf("plugin %s has no field %q", p["name"], field)
			}
		}
	}
	want := map[string]string{"good": "stopped", "broken": "invalid", "off": "disabled"}
	for n, st := range want {
		if states[n] != st {
			t.Errorf("%s: state %q, want %q", n, states[n], st)
		}
	}

	status, body = call(t, srv, "GET", "/api/admin/v1/plugins/broken", "")
	if status != http.StatusOK || !strings.Contains(body["reason"].(string), `unknown field "colour"`) {
		t.Errorf("get broken: %d %v", status, body)
	}
	status, body = call(t, srv, "GET", "/api/admin/v1/plugins/nope", "")
	if status != http.StatusNotFound || errorCode(body) != "unknown_plugin" {
		t.Errorf("get unknown: %d %v", status, body)
	}
	status, body = call(t, srv, "DELETE", "/api/admin/v1/plugins/good", "")
	if status != http.StatusMethodNotAllowed || errorCode(body) != "method_not_allowed" {
		t.Errorf("delete: %d %v", status, body)
	}
}

func TestActions(t *testing.T) {
	srv := newServer(t, "")
	for _, tc := range []struct {
		path   string
		status int
		code   string
	}{
		{"/api/admin/v1/plugins/broken/start", http.StatusConflict, "invalid_transition"},
		{"/api/admin/v1/plugins/off/start", http.StatusConflict, "invalid_transition"},
		{"/api/admin/v1/plugins/good/stop", http.StatusConflict, "invalid_transition"},
		{"/api/admin/v1/plugins/nope/restart", http.StatusNotFound, "unknown_plugin"},
	} {
		if status, body := call(t, srv, "POST", tc.path, ""); status != tc.status || errorCode(body) != tc.code {
			t.Errorf("POST %s: %d %v, want %d %s", tc.path, status, body, tc.status, tc.code)
		}
	}

	status, body := call(t, srv, "POST", "/api/admin/v1/plugins/good/start", "")
	if status != http.StatusOK || body["state"] != "running" || body["pid"].(float64) <= 0 || body["started_at"] == nil {
		t.Fatalf("start: %d %v", status, body)
	}
	pid := body["pid"]
	status, body = call(t, srv, "POST", "/api/admin/v1/plugins/good/start", "")
	if status != http.StatusConflict || !strings.Contains(body["error"].(map[string]any)["message"].(string), "is running") {
		t.Errorf("second start: %d %v", status, body)
	}
	status, body = call(t, srv, "POST", "/api/admin/v1/plugins/good/restart", "")
	if status != http.StatusOK || body["state"] != "running" || body["pid"] == pid {
		t.Errorf("restart: %d %v (old pid %v)", status, body, pid)
	}
	status, body = call(t, srv, "POST", "/api/admin/v1/plugins/good/stop", "")
	if status != http.StatusOK || body["state"] != "stopped" || body["pid"].(float64) != 0 || body["last_exit"] == nil {
		t.Errorf("stop: %d %v", status, body)
	}
	status, body = call(t, srv, "GET", "/api/admin/v1/health", "")
	counts := body["plugins"].(map[string]any)["states"].(map[string]any)
	if status != http.StatusOK || body["version"] != "9.9.9" || counts["stopped"] != 1.0 || counts["invalid"] != 1.0 {
		t.Errorf("health: %d %v", status, body)
	}
}

func TestTokenSchemeIsCaseInsensitive(t *testing.T) {
	srv := newServer(t, "s3cret")
	for _, tc := range []struct {
		auth   string
		status int
	}{
		{"Bearer s3cret", http.StatusOK},
		{"bearer s3cret", http.StatusOK},
		{"BEARER s3cret", http.StatusOK},
		{"Basic s3cret", http.StatusUnauthorized},
		{"bearer wrong", http.StatusUnauthorized},
		{"s3cret", http.StatusUnauthorized},
	} {
		if status, body := callAuth(t, srv, "GET", "/api/admin/v1/plugins", tc.auth); status != tc.status {
			t.Errorf("Authorization %q: %d %v, want %d", tc.auth, status, body, tc.status)
		}
	}
}

func TestHealthNamesPIDAndVersion(t *testing.T) {
	srv := newServer(t, "")
	status, body := call(t, srv, "GET", "/api/admin/v1/health", "")
	if status != http.StatusOK || body["pid"] != float64(os.Getpid()) || body["version"] != "9.9.9" {
		t.Fatalf("health: %d %v, want pid %d and version 9.9.9", status, body, os.Getpid())
	}
}

func TestToken(t *testing.T) {
	srv := newServer(t, "s3cret")
	if status, body := call(t, srv, "GET", "/api/admin/v1/plugins", ""); status != http.StatusUnauthorized || errorCode(body) != "unauthorized" {
		t.Errorf("no token: %d %v", status, body)
	}
	if status, _ := call(t, srv, "GET", "/api/admin/v1/plugins", "wrong"); status != http.StatusUnauthorized {
		t.Errorf("wrong token: %d", status)
	}
	if status, _ := call(t, srv, "POST", "/api/admin/v1/plugins/good/stop", ""); status != http.StatusUnauthorized {
		t.Errorf("action without token: %d", status)
	}
	if status, _ := call(t, srv, "GET", "/api/admin/v1/plugins", "s3cret"); status != http.StatusOK {
		t.Errorf("right token: %d", status)
	}
	if status, body := call(t, srv, "GET", "/api/admin/v1/health", ""); status != http.StatusOK || body["status"] != "ok" {
		t.Errorf("health without token: %d %v", status, body)
	}
}

func TestTokenGuessingIsRateLimited(t *testing.T) {
	srv := newServer(t, "s3cret")
	limited := 0
	for i := 0; i < 100 && limited == 0; i++ {
		status, body := call(t, srv, "GET", "/api/admin/v1/plugins", fmt.Sprintf("guess-%d", i))
		switch {
		case status == http.StatusTooManyRequests && errorCode(body) == "rate_limited":
			limited = i
		case status != http.StatusUnauthorized:
			t.Fatalf("guess %d: %d %v", i, status, body)
		}
	}
	if limited != 10 {
		t.Fatalf("limited after %d wrong tokens, want after the burst of 10", limited)
	}
	if status, _ := call(t, srv, "GET", "/api/admin/v1/plugins", "s3cret"); status != http.StatusTooManyRequests {
		t.Errorf("the right token while limited: %d, want 429 (no check at all while limited)", status)
	}
	if status, _ := call(t, srv, "GET", "/api/admin/v1/health", ""); status != http.StatusOK {
		t.Errorf("health while limited: %d", status)
	}
}

func TestRightTokenIsNeverLimited(t *testing.T) {
	srv := newServer(t, "s3cret")
	for i := 0; i < 100; i++ {
		if status, body := call(t, srv, "GET", "/api/admin/v1/plugins", "s3cret"); status != http.StatusOK {
			t.Fatalf("request %d with the right token: %d %v", i, status, body)
		}
	}
}

func TestToJSONExitAndMount(t *testing.T) {
	now := time.Now()
	p := toJSON(pluginstate.Snapshot{Mount: "/m", LastExit: &pluginstate.Exit{Code: -1, Unknown: true, Time: now}}, now)
	if p.Mount == nil || *p.Mount != "/m" || p.LastExit == nil || p.LastExit.Code != nil || p.LastExit.Signal != nil {
		t.Errorf("adopted process exit or mount: %+v %+v", p.Mount, p.LastExit)
	}
	p = toJSON(pluginstate.Snapshot{LastExit: &pluginstate.Exit{Code: 3, Time: now}}, now)
	if p.Mount != nil || p.LastExit.Code == nil || *p.LastExit.Code != 3 {
		t.Errorf("exit code 3 without mount: %+v %+v", p.Mount, p.LastExit)
	}
}
