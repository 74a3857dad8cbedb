package proxy

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/home-console/client-manager/pkg/pluginproto"
)

// echo answers with what it received.
type echoed struct {
	Method, Path, RawPath, Query, Host string
	Header                             http.Header
}

func echoHandler(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(echoed{r.Method, r.URL.Path, r.URL.RawPath, r.URL.RawQuery, r.Host, r.Header})
}

// fixture is a runtime port with one mount, /svc, over a switchable upstream.
type fixture struct {
	front *httptest.Server

	mu  sync.Mutex
	up  Upstream
	err error
}

func newFixture(t *testing.T, upstream http.Handler) *fixture {
	t.Helper()
	f := &fixture{}
	if upstream != nil {
		srv := httptest.NewServer(upstream)
		t.Cleanup(srv.Close)
		f.up = Upstream{Addr: srv.Listener.Addr().String(), Token: "s3cret"}
	}
	next := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusTeapot)
	})
	p := New(Config{
		Mounts:  []Mount{{Path: "/svc", Plugin: "svc"}},
		Resolve: f.resolve,
		Next:    next,
		Log:     slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	f.front = httptest.NewServer(p)
	t.Cleanup(f.front.Close)
	return f
}

func (f *fixture) resolve(plugin string) (Upstream, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if plugin != "svc" {
		return Upstream{}, errors.New("unknown")
	}
	return f.up, f.err
}

func (f *fixture) set(up Upstream, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.up, f.err = up, err
}

func do(t *testing.T, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res, body
}

func TestHeadersAndPaths(t *testing.T) {
	f := newFixture(t, http.HandlerFunc(echoHandler))
	tests := []struct{ path, wantPath, wantRaw, wantQuery string }{
		{"/svc/api/clients?limit=5", "/api/clients", "", "limit=5"},
		{"/svc", "/", "", ""},
		{"/svc/", "/", "", ""},
		{"/svc/a%2Fb/c", "/a/b/c", "/a%2Fb/c", ""},
	}
	for _, tc := range tests {
		req, _ := http.NewRequest("GET", f.front.URL+tc.path, nil)
		req.Host = "runtime.example:8000"
		for _, h := range []string{"X-Forwarded-For", "Forwarded", "X-Real-IP", "X-Forwarded-Host",
			pluginproto.HeaderForwardedFor, pluginproto.HeaderProxyToken} {
			req.Header.Set(h, "203.0.113.9")
		}
		req.Header.Set("X-Custom", "kept")
		res, body := do(t, req)
		var got echoed
		if err := json.Unmarshal(body, &got); res.StatusCode != http.StatusOK || err != nil {
			t.Fatalf("%s: %d %s", tc.path, res.StatusCode, body)
		}
		if got.Path != tc.wantPath || got.RawPath != tc.wantRaw || got.Query != tc.wantQuery {
			t.Errorf("%s: upstream got path %q raw %q query %q, want %q %q %q",
				tc.path, got.Path, got.RawPath, got.Query, tc.wantPath, tc.wantRaw, tc.wantQuery)
		}
		if got.Host != "runtime.example:8000" {
			t.Errorf("%s: upstream got Host %q, want the caller's", tc.path, got.Host)
		}
		h := got.Header
		if ff := h.Values(pluginproto.HeaderForwardedFor); len(ff) != 1 || ff[0] != "127.0.0.1" {
			t.Errorf("%s: %s = %q, want the proxy's peer 127.0.0.1 only", tc.path, pluginproto.HeaderForwardedFor, ff)
		}
		if tok := h.Values(pluginproto.HeaderProxyToken); len(tok) != 1 || tok[0] != "s3cret" {
			t.Errorf("%s: %s = %q, want the plugin's secret only", tc.path, pluginproto.HeaderProxyToken, tok)
		}
		for _, spoofed := range []string{"X-Forwarded-For", "Forwarded", "X-Real-Ip", "X-Forwarded-Host"} {
			if v := h.Get(spoofed); v != "" {
				t.Errorf("%s: %s = %q reached the plugin", tc.path, spoofed, v)
			}
		}
		if h.Get("X-Custom") != "kept" {
			t.Errorf("%s: other headers must pass: %v", tc.path, h)
		}
	}
}

func TestOutsideMountsGoesToNext(t *testing.T) {
	f := newFixture(t, http.HandlerFunc(echoHandler))
	for _, path := range []string{"/", "/svcx", "/api/admin/v1/plugins", "/other/svc"} {
		req, _ := http.NewRequest("GET", f.front.URL+path, nil)
		if res, _ := do(t, req); res.StatusCode != http.StatusTeapot {
			t.Errorf("%s: %d, want the next handler's 418", path, res.StatusCode)
		}
	}
}

func TestUnavailable(t *testing.T) {
	f := newFixture(t, nil)
	f.set(Upstream{}, errors.New("plugin svc is stopped"))
	req, _ := http.NewRequest("GET", f.front.URL+"/svc/health", nil)
	res, body := do(t, req)
	checkError(t, res, body, http.StatusServiceUnavailable, "plugin_unavailable", "plugin svc is stopped")
	if res.Header.Get("Retry-After") == "" {
		t.Error("503 without Retry-After")
	}

	// Running by the supervisor's account, but nothing listens any more.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	f.set(Upstream{Addr: addr}, nil)
	res, body = do(t, req)
	checkError(t, res, body, http.StatusServiceUnavailable, "plugin_unavailable", "not accepting connections")
}

func TestUpstreamFailsMidway(t *testing.T) {
	f := newFixture(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			_ = conn.Close() // the plugin dies before answering
		}
	}))
	req, _ := http.NewRequest("GET", f.front.URL+"/svc/x", nil)
	res, body := do(t, req)
	checkError(t, res, body, http.StatusBadGateway, "bad_gateway", "plugin svc failed to answer")
}

func TestUpstreamFollowsRestarts(t *testing.T) {
	f := newFixture(t, http.HandlerFunc(echoHandler))
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "second")
	}))
	defer other.Close()
	f.set(Upstream{Addr: other.Listener.Addr().String()}, nil)
	req, _ := http.NewRequest("GET", f.front.URL+"/svc/", nil)
	if res, body := do(t, req); res.StatusCode != http.StatusOK || string(body) != "second" {
		t.Errorf("after the upstream moved: %d %q", res.StatusCode, body)
	}
}

func TestWebSocketThroughProxy(t *testing.T) {
	f := newFixture(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/ws" || r.Header.Get(pluginproto.HeaderProxyToken) != "s3cret" {
			http.Error(w, "unexpected request", http.StatusBadRequest)
			return
		}
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		for {
			typ, msg, err := c.Read(r.Context())
			if err != nil {
				return
			}
			if err := c.Write(r.Context(), typ, msg); err != nil {
				return
			}
		}
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(f.front.URL, "http")+"/svc/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	for _, msg := range []string{"hello", strings.Repeat("x", 30_000)} {
		if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		_, got, err := c.Read(ctx)
		if err != nil || string(got) != msg {
			t.Fatalf("echo of %d bytes: got %d bytes, %v", len(msg), len(got), err)
		}
	}
	if err := c.Close(websocket.StatusNormalClosure, "done"); err != nil {
		t.Errorf("close: %v", err)
	}
}

func TestStreamsResponses(t *testing.T) {
	release := make(chan struct{})
	f := newFixture(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, "data: first\n\n")
		w.(http.Flusher).Flush()
		<-release
		_, _ = io.WriteString(w, "data: second\n\n")
	}))
	defer close(release)
	req, _ := http.NewRequest("GET", f.front.URL+"/svc/events", nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	line := make(chan string, 1)
	go func() {
		l, _ := bufio.NewReader(res.Body).ReadString('\n')
		line <- l
	}()
	select {
	case l := <-line:
		if l != "data: first\n" {
			t.Errorf("first line %q", l)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the first event was not streamed before the response ended")
	}
}

func checkError(t *testing.T, res *http.Response, body []byte, status int, code, msg string) {
	t.Helper()
	var e struct {
		Error struct{ Code, Message string }
	}
	if err := json.Unmarshal(body, &e); err != nil || res.StatusCode != status || e.Error.Code != code ||
		!strings.Contains(e.Error.Message, msg) {
		t.Errorf("got %d %s, want %d %s containing %q", res.StatusCode, body, status, code, msg)
	}
	if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type %q", ct)
	}
	if cc := res.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q, want no-store", cc)
	}
}
