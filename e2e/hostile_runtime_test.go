package e2e

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// hostileRuntime starts a runtime without admin token serving the flaky
// plugin (running) under the mount /flaky, with extra environment.
func hostileRuntime(t *testing.T, extra ...string) (*runtimeProc, pluginJSON) {
	t.Helper()
	r := startRuntime(t, plugins(t, map[string]string{"flaky": flaky("flaky", "", `,"mount":"/flaky"`)}), extra...)
	return r, r.waitState("flaky", "running", 20*time.Second)
}

// hostPort is the port of the runtime's address, as "host:port" with
// another host.
func (r *runtimeProc) hostPort(host string) string {
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(r.admin, "http://"))
	return net.JoinHostPort(host, port)
}

// expectUnchanged fails unless the plugin still runs as before: same
// pid, no restart.
func (r *runtimeProc) expectUnchanged(t *testing.T, before pluginJSON) {
	t.Helper()
	if p := r.plugin(before.Name); p.State != "running" || p.PID != before.PID || p.Restarts != before.Restarts {
		t.Fatalf("%s was acted on: %s pid %d restarts %d, was pid %d restarts %d", before.Name, p.State, p.PID,
			p.Restarts, before.PID, before.Restarts)
	}
}

// TestRuntimeRefusesForeignHosts: DNS rebinding. Requests to the
// runtime's port addressed to a name that is not loopback, the listen
// host or in RUNTIME_ALLOWED_HOSTS are refused with 421, on the admin API
// and on a plugin's mount alike, and do nothing.
func TestRuntimeRefusesForeignHosts(t *testing.T) {
	t.Parallel()
	r, before := hostileRuntime(t, "RUNTIME_ALLOWED_HOSTS=runtime.example, *.ops.example")
	for _, tc := range []struct {
		method, path, host string
		status             int
		code               string
	}{
		{"GET", "/api/admin/v1/plugins", "evil.example", 421, "misdirected_request"},
		{"GET", "/api/admin/v1/health", "evil.example", 421, "misdirected_request"},
		{"POST", "/api/admin/v1/plugins/flaky/stop", r.hostPort("evil.example"), 421, "misdirected_request"},
		{"POST", "/api/admin/v1/plugins/flaky/restart", r.hostPort("localhost.evil.example"), 421, "misdirected_request"},
		{"GET", "/flaky/echo", r.hostPort("evil.example"), 421, "misdirected_request"},
		{"GET", "/flaky/echo", r.hostPort("ops.example"), 421, "misdirected_request"},
		{"GET", "/api/admin/v1/plugins", r.hostPort("127.0.0.1"), 200, ""},
		{"GET", "/api/admin/v1/plugins", r.hostPort("localhost"), 200, ""},
		{"GET", "/api/admin/v1/plugins", r.hostPort("::1"), 200, ""},
		{"GET", "/flaky/echo", r.hostPort("runtime.example"), 200, ""},
		{"GET", "/flaky/echo", "a.ops.example", 200, ""},
	} {
		a := send(t, tc.method, r.admin+tc.path, nil, "Host", tc.host, "Content-Type", "application/json")
		if a.status != tc.status || a.code != tc.code {
			t.Errorf("%s %s Host %s: %d %s, want %d %q", tc.method, tc.path, tc.host, a.status, a.body, tc.status, tc.code)
		}
		if a.status == 421 && !strings.Contains(string(a.body), "RUNTIME_ALLOWED_HOSTS") {
			t.Errorf("421 does not say how to allow the host: %s", a.body)
		}
	}
	time.Sleep(200 * time.Millisecond)
	r.expectUnchanged(t, before)
}

// TestRuntimeAdminRefusesCrossSiteRequests: a web page cannot make an
// operator's browser act on the admin API: a foreign Origin is 403 on
// every action, and an action needs a JSON content type or a bearer
// token, which no simple (preflight-free) cross-site request carries.
func TestRuntimeAdminRefusesCrossSiteRequests(t *testing.T) {
	t.Parallel()
	r, before := hostileRuntime(t, "RUNTIME_ALLOWED_ORIGINS=https://console.example")
	restart := r.admin + "/api/admin/v1/plugins/flaky/restart"
	for _, tc := range []struct {
		name    string
		headers []string
		status  int
		code    string
	}{
		{"foreign origin, text/plain", []string{"Origin", "http://evil.example", "Content-Type", "text/plain"}, 403, "origin_not_allowed"},
		{"foreign origin, JSON", []string{"Origin", "http://evil.example", "Content-Type", "application/json"}, 403, "origin_not_allowed"},
		{"foreign origin, bearer", []string{"Origin", "http://evil.example", "Authorization", "Bearer x"}, 403, "origin_not_allowed"},
		{"null origin", []string{"Origin", "null", "Content-Type", "application/json"}, 403, "origin_not_allowed"},
		{"text/plain", []string{"Content-Type", "text/plain"}, 415, "unsupported_media_type"},
		{"form", []string{"Content-Type", "application/x-www-form-urlencoded"}, 415, "unsupported_media_type"},
		{"multipart", []string{"Content-Type", "multipart/form-data; boundary=x"}, 415, "unsupported_media_type"},
		{"no content type", nil, 415, "unsupported_media_type"},
	} {
		a := send(t, "POST", restart, strings.NewReader("{}"), tc.headers...)
		if a.status != tc.status || a.code != tc.code {
			t.Errorf("%s: %d %s, want %d %s", tc.name, a.status, a.body, tc.status, tc.code)
		}
	}
	r.expectUnchanged(t, before)
	if a := send(t, "GET", r.admin+"/api/admin/v1/plugins", nil, "Origin", "http://evil.example"); a.status != 200 {
		t.Errorf("GET with a foreign origin: %d (reads are not state-changing; a page cannot read the answer)", a.status)
	}
	for _, headers := range [][]string{
		{"Origin", r.admin, "Content-Type", "application/json; charset=utf-8"},
		{"Origin", "https://console.example", "Content-Type", "application/json"},
		{"Authorization", "Bearer anything"},
	} {
		a := send(t, "POST", restart, nil, headers...)
		p := r.plugin("flaky")
		if a.status != 200 || p.State != "running" || p.PID == before.PID {
			t.Fatalf("restart with %q: %d %s, now pid %d (was %d)", headers, a.status, a.body, p.PID, before.PID)
		}
		before = p
	}
}

// halfSent opens a connection to the runtime, sends a restart of plugin
// (with the extra header lines) whose Content-Length is 100 with 10 bytes
// of body, and returns it.
func halfSent(t *testing.T, r *runtimeProc, plugin string, headers ...string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(r.admin, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	head := "POST /api/admin/v1/plugins/" + plugin + "/restart HTTP/1.1\r\nHost: " + r.hostPort("127.0.0.1") +
		"\r\nContent-Type: application/json\r\nContent-Length: 100\r\n"
	for _, h := range headers {
		head += h + "\r\n"
	}
	if _, err = io.WriteString(conn, head+"\r\n{         "); err != nil {
		t.Fatal(err)
	}
	return conn
}

// statusLine reads the answer's status line within d ("" if none).
func statusLine(conn net.Conn, d time.Duration) string {
	_ = conn.SetReadDeadline(time.Now().Add(d))
	line, _ := bufio.NewReader(conn).ReadString('\n')
	return strings.TrimSpace(line)
}

// TestRuntimeActsOnlyOnACompleteBody: an action whose body never
// completes is not carried out: a body cut short is 400 incomplete_body,
// a body that stalls is 408 after the body timeout (10 s), a client that
// vanishes mid-body leaves nothing done.
func TestRuntimeActsOnlyOnACompleteBody(t *testing.T) {
	t.Parallel()
	r, before := hostileRuntime(t)

	vanished := halfSent(t, r, "flaky")
	time.Sleep(100 * time.Millisecond)
	_ = vanished.Close()

	cut := halfSent(t, r, "flaky")
	_ = cut.(*net.TCPConn).CloseWrite()
	if got := statusLine(cut, 5*time.Second); got != "HTTP/1.1 400 Bad Request" {
		t.Errorf("body cut short: %q, want 400", got)
	}
	begin := time.Now()
	stalled := halfSent(t, r, "flaky")
	got := statusLine(stalled, 20*time.Second)
	t.Logf("stalled_body_answered_after=%s", time.Since(begin).Round(time.Millisecond))
	if got != "HTTP/1.1 408 Request Timeout" {
		t.Errorf("stalled body: %q, want 408", got)
	}
	r.expectUnchanged(t, before)
	if strings.Contains(r.logs.String(), `"msg":"operator action"`) {
		t.Errorf("an operator action was logged for a request whose body never arrived")
	}
	a := send(t, "POST", r.admin+"/api/admin/v1/plugins/flaky/restart", strings.NewReader(`{"force":true}`),
		"Content-Type", "application/json")
	if a.status != http.StatusBadRequest || a.code != "invalid_json" {
		t.Errorf("action with parameters: %d %s, want 400 invalid_json", a.status, a.body)
	}
	r.expectUnchanged(t, before)
}
