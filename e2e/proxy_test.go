package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/home-console/client-manager/pkg/agentproto"
	"github.com/home-console/client-manager/pkg/pluginproto"
)

// mounted adds a mount to a manifest.
func mounted(manifest, mount string) string {
	return strings.TrimSuffix(strings.TrimSpace(manifest), "}") + `,"mount":"` + mount + `"}`
}

// apiError decodes the error envelope.
func apiError(body string) (code, message string) {
	var e struct {
		Error struct{ Code, Message string }
	}
	_ = json.Unmarshal([]byte(body), &e)
	return e.Error.Code, e.Error.Message
}

func TestOnePortMode(t *testing.T) {
	t.Parallel()
	r := startRuntime(t, plugins(t, map[string]string{
		"client_manager": mounted(clientManager(), "/client-manager"),
		"flaky":          flaky("flaky", "", `,"mount":"/flaky"`),
	}), "RUNTIME_ADMIN_TOKEN=admin-secret")
	p := r.waitState(cm, "running", 20*time.Second)
	r.waitState("flaky", "running", 20*time.Second)
	base := r.admin + "/client-manager"

	var direct, proxied struct {
		Status     string `json:"status"`
		InstanceID string `json:"instance_id"`
	}
	code, body := get("http://" + p.HTTPAddress + "/health")
	_ = json.Unmarshal([]byte(body), &direct)
	code2, body2 := get(base + "/health")
	_ = json.Unmarshal([]byte(body2), &proxied)
	if code != http.StatusOK || code2 != http.StatusOK || proxied != direct || proxied.InstanceID != p.InstanceID {
		t.Fatalf("/health direct %d %s, through the runtime %d %s", code, body, code2, body2)
	}
	code, body = get(base + "/api/clients")
	var clients map[string]json.RawMessage
	if err := json.Unmarshal([]byte(body), &clients); code != http.StatusOK || err != nil || clients["items"] == nil {
		t.Fatalf("GET /client-manager/api/clients: %d %s", code, body)
	}
	// The admin token guards the admin API only; a plugin does its own auth.
	if code, body := get(r.admin + "/api/admin/v1/plugins"); code != http.StatusUnauthorized {
		t.Errorf("admin API without its token: %d %s", code, body)
	}

	checkWebSocketReachesPlugin(t, base)
	checkCallerIdentity(t, r.admin+"/flaky/echo")

	if code, p := r.action(cm, "stop"); code != http.StatusOK || p.State != "stopped" {
		t.Fatalf("stop: %d %+v", code, p)
	}
	res, err := httpc.Get(base + "/health")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	_ = res.Body.Close()
	if c, msg := apiError(string(b)); res.StatusCode != http.StatusServiceUnavailable || c != "plugin_unavailable" ||
		!strings.Contains(msg, "stopped") || res.Header.Get("Retry-After") == "" {
		t.Errorf("mount of a stopped plugin: %d %s (Retry-After %q)", res.StatusCode, b, res.Header.Get("Retry-After"))
	}
	if code, _ := r.action(cm, "start"); code != http.StatusOK {
		t.Fatalf("start: %d", code)
	}
	if code, body := get(base + "/health"); code != http.StatusOK {
		t.Errorf("/health through the runtime after a restart on a new port: %d %s", code, body)
	}
}

// checkWebSocketReachesPlugin attempts agent WebSocket upgrades through the
// runtime's port: the client manager itself refuses them (401) for want of
// a valid credential.
func checkWebSocketReachesPlugin(t *testing.T, base string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	url := "ws" + strings.TrimPrefix(base, "http") + agentproto.PathWebSocket
	for _, tc := range []struct{ auth, message string }{
		{"", "missing Authorization"},
		{"Bearer bogus-credential", "invalid agent credential"},
	} {
		opts := &websocket.DialOptions{Subprotocols: []string{agentproto.Subprotocol}, HTTPHeader: http.Header{}}
		if tc.auth != "" {
			opts.HTTPHeader.Set("Authorization", tc.auth)
		}
		c, res, err := websocket.Dial(ctx, url, opts)
		if err == nil {
			c.CloseNow()
			t.Fatalf("upgrade with %q accepted", tc.auth)
		}
		if res == nil {
			t.Fatalf("upgrade with %q: no response: %v", tc.auth, err)
		}
		b, _ := io.ReadAll(res.Body)
		if code, msg := apiError(string(b)); res.StatusCode != http.StatusUnauthorized || code != "unauthorized" ||
			!strings.Contains(msg, tc.message) {
			t.Errorf("upgrade with %q: %d %s, want the client manager's 401 %q", tc.auth, res.StatusCode, b, tc.message)
		}
	}
}

// checkCallerIdentity calls the test plugin's echo through the runtime with
// spoofed identity headers: the plugin sees the proxy's own.
func checkCallerIdentity(t *testing.T, url string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	for _, h := range []string{pluginproto.HeaderForwardedFor, "X-Forwarded-For", "X-Real-IP"} {
		req.Header.Set(h, "203.0.113.7")
	}
	req.Header.Set(pluginproto.HeaderProxyToken, "guessed")
	res, err := httpc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var echo struct {
		Path         string `json:"path"`
		ForwardedFor string `json:"forwarded_for"`
		TokenOK      bool   `json:"token_ok"`
	}
	if err := json.NewDecoder(res.Body).Decode(&echo); err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("GET /flaky/echo: %d %v", res.StatusCode, err)
	}
	if echo.Path != "/echo" || echo.ForwardedFor != "127.0.0.1" || !echo.TokenOK {
		t.Errorf("the plugin saw %+v; want path /echo, forwarded for 127.0.0.1 and the token it got from Start", echo)
	}
}
