package adminapi

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/home-console/client-manager/internal/origin"
	"github.com/home-console/client-manager/internal/pluginstate"
)

// recorder is a Plugins with one plugin "p" that records the actions it
// is asked for.
type recorder struct {
	mu      sync.Mutex
	actions []string
}

func (r *recorder) List() []pluginstate.Snapshot { return []pluginstate.Snapshot{r.snap()} }

func (r *recorder) snap() pluginstate.Snapshot {
	return pluginstate.Snapshot{Name: "p", State: pluginstate.StateRunning}
}

func (r *recorder) Snapshot(name string) (pluginstate.Snapshot, error) {
	if name != "p" {
		return pluginstate.Snapshot{}, pluginstate.ErrUnknownPlugin
	}
	return r.snap(), nil
}

func (r *recorder) act(what string) (pluginstate.Snapshot, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.actions = append(r.actions, what)
	return r.snap(), nil
}

func (r *recorder) Start(context.Context, string) (pluginstate.Snapshot, error) {
	return r.act("start")
}

func (r *recorder) Stop(context.Context, string) (pluginstate.Snapshot, error) { return r.act("stop") }

func (r *recorder) Restart(context.Context, string) (pluginstate.Snapshot, error) {
	return r.act("restart")
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.actions)
}

// guardedServer serves the admin API over a recorder, allowing the
// origin https://console.example besides the same origin.
func guardedServer(t *testing.T, token string) (*httptest.Server, *recorder) {
	t.Helper()
	origins, err := origin.New([]string{"https://console.example"})
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	cfg := Config{Token: token, Origins: origins.WithSetting("RUNTIME_ALLOWED_ORIGINS"), BodyTimeout: 300 * time.Millisecond}
	srv := httptest.NewServer(New(rec, cfg, slog.New(slog.DiscardHandler)))
	t.Cleanup(srv.Close)
	return srv, rec
}

func TestStateChangingRequestGuards(t *testing.T) {
	tests := []struct {
		name, token  string
		headers      map[string]string
		body         string
		status       int
		code, inText string
	}{
		{"JSON", "", map[string]string{"Content-Type": "application/json"}, "", 200, "", ""},
		{"JSON with charset and {}", "", map[string]string{"Content-Type": "application/json; charset=utf-8"}, " {} ", 200, "", ""},
		{"bearer without content type", "", map[string]string{"Authorization": "Bearer x"}, "", 200, "", ""},
		{"with the configured token", "tok", map[string]string{"Authorization": "Bearer tok"}, "", 200, "", ""},
		{"same origin", "", map[string]string{"Content-Type": "application/json", "Origin": "$"}, "", 200, "", ""},
		{"allowed origin", "", map[string]string{"Content-Type": "application/json", "Origin": "https://console.example"}, "", 200, "", ""},
		{"text/plain", "", map[string]string{"Content-Type": "text/plain"}, "", 415, "unsupported_media_type", "application/json"},
		{"no content type", "", nil, "", 415, "unsupported_media_type", "Authorization: Bearer"},
		{"form", "", map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, "a=b", 415, "unsupported_media_type", ""},
		{"malformed content type", "", map[string]string{"Content-Type": "application/json; ==="}, "", 415, "unsupported_media_type", ""},
		{"foreign origin", "", map[string]string{"Content-Type": "application/json", "Origin": "http://evil.example"}, "", 403,
			origin.Code, "RUNTIME_ALLOWED_ORIGINS"},
		{"foreign origin with token", "tok", map[string]string{"Authorization": "Bearer tok", "Origin": "http://evil.example"}, "", 403,
			origin.Code, ""},
		{"parameters", "", map[string]string{"Content-Type": "application/json"}, `{"force":true}`, 400, "invalid_json", "no parameters"},
		{"not an object", "", map[string]string{"Content-Type": "application/json"}, `null`, 400, "invalid_json", ""},
		{"trailing data", "", map[string]string{"Content-Type": "application/json"}, `{} {}`, 400, "invalid_json", ""},
		{"65 KiB body", "", map[string]string{"Content-Type": "application/json"}, strings.Repeat(" ", 65<<10), 413,
			"body_too_large", "65536 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, rec := guardedServer(t, tt.token)
			req, err := http.NewRequest("POST", srv.URL+"/api/admin/v1/plugins/p/restart", strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range tt.headers {
				req.Header.Set(k, strings.ReplaceAll(v, "$", srv.URL))
			}
			res, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			body, _ := io.ReadAll(res.Body)
			acted := 0
			if tt.status == 200 {
				acted = 1
			}
			codeOK := tt.code == "" || strings.Contains(string(body), `"code":"`+tt.code+`"`)
			if res.StatusCode != tt.status || !codeOK ||
				!strings.Contains(string(body), tt.inText) || rec.count() != acted {
				t.Fatalf("answered %d %s with %d actions, want %d %s (%q) and %d", res.StatusCode, body, rec.count(),
					tt.status, tt.code, tt.inText, acted)
			}
		})
	}
}

// rawRequest sends a restart with Content-Length 100 but only 10 bytes of
// body, then closes its side (closeWrite) or stalls, and returns the
// answer's status line ("" if none).
func rawRequest(t *testing.T, srv *httptest.Server, closeWrite bool) string {
	t.Helper()
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, err = io.WriteString(conn, "POST /api/admin/v1/plugins/p/restart HTTP/1.1\r\nHost: 127.0.0.1\r\n"+
		"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{        ")
	if err != nil {
		t.Fatal(err)
	}
	if closeWrite {
		_ = conn.(*net.TCPConn).CloseWrite()
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, _ := bufio.NewReader(conn).ReadString('\n')
	return strings.TrimSpace(line)
}

func TestActionWaitsForTheWholeBody(t *testing.T) {
	for _, tt := range []struct {
		name       string
		closeWrite bool
		status     string
	}{
		{"body ends early", true, "HTTP/1.1 400 Bad Request"},
		{"body stalls", false, "HTTP/1.1 408 Request Timeout"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv, rec := guardedServer(t, "")
			if got := rawRequest(t, srv, tt.closeWrite); got != tt.status {
				t.Errorf("status line %q, want %q", got, tt.status)
			}
			if n := rec.count(); n != 0 {
				t.Fatalf("the restart was carried out (%d actions) although its body never arrived", n)
			}
		})
	}
}
