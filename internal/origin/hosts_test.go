package origin

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestLoopbackHost(t *testing.T) {
	for host, want := range map[string]bool{
		"localhost": true, "localhost:10000": true, "LOCALHOST.:80": true, "app.localhost:1": true,
		"127.0.0.1:10000": true, "127.9.9.9": true, "[::1]:10000": true, "::1": true, "[::1]": true,
		"": false, "example.com": false, "localhost.example.com:10000": false, "10.0.0.1:10000": false,
		"[::2]:10000": false, "evil-localhost:1": false,
	} {
		if got := LoopbackHost(host); got != want {
			t.Errorf("LoopbackHost(%q) = %v, want %v", host, got, want)
		}
	}
}

func TestHostsAllowed(t *testing.T) {
	tests := []struct {
		listen   string
		patterns []string
		host     string
		want     bool
	}{
		{"127.0.0.1", nil, "127.0.0.1:8000", true},
		{"127.0.0.1", nil, "localhost:8000", true},
		{"127.0.0.1", nil, "[::1]:8000", true},
		{"127.0.0.1", nil, "", true},
		{"127.0.0.1", nil, "evil.example:8000", false},
		{"127.0.0.1", nil, "evil.example", false},
		{"127.0.0.1", nil, "192.168.1.5:8000", false},
		{"192.168.1.5", nil, "192.168.1.5:8000", true},
		{"192.168.1.5", nil, "192.168.1.6:8000", false},
		{"Runtime.Example.", nil, "runtime.example:8000", true},
		{"0.0.0.0", nil, "192.168.1.5:8000", true},
		{"::", nil, "[2001:db8::1]:8000", true},
		{"", nil, "10.1.2.3", true},
		{"0.0.0.0", nil, "runtime.example:8000", false},
		{"0.0.0.0", nil, "0.0.0.0.evil.example", false},
		{"127.0.0.1", []string{"runtime.example", " *.ops.example ", ""}, "runtime.example:8000", true},
		{"127.0.0.1", []string{"runtime.example"}, "RUNTIME.EXAMPLE", true},
		{"127.0.0.1", []string{"*.ops.example"}, "a.ops.example:8000", true},
		{"127.0.0.1", []string{"*.ops.example"}, "ops.example:8000", false},
		{"127.0.0.1", []string{"runtime.example:9000"}, "runtime.example:8000", true},
		{"127.0.0.1", []string{"[fd00::1]"}, "[fd00::1]:8000", true},
	}
	for _, tt := range tests {
		h, err := NewHosts(tt.listen, tt.patterns, "RUNTIME_ALLOWED_HOSTS")
		if err != nil {
			t.Fatal(err)
		}
		if got := h.Allowed(tt.host); got != tt.want {
			t.Errorf("listen %q patterns %q: Allowed(%q) = %v, want %v", tt.listen, tt.patterns, tt.host, got, tt.want)
		}
	}
}

func TestNewHostsRefusesBadPatterns(t *testing.T) {
	for _, pat := range []string{"[a-", "http://runtime.example", "runtime.example/x"} {
		if _, err := NewHosts("127.0.0.1", []string{pat}, "X"); err == nil {
			t.Errorf("pattern %q accepted", pat)
		}
	}
}

func TestHostsGuard(t *testing.T) {
	h, err := NewHosts("127.0.0.1", nil, "RUNTIME_ALLOWED_HOSTS")
	if err != nil {
		t.Fatal(err)
	}
	served := 0
	g := h.Guard(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { served++ }))
	for host, allow := range map[string]bool{"127.0.0.1:8000": true, "evil.example:8000": false} {
		r := httptest.NewRequest("POST", "/api/admin/v1/plugins/x/stop", nil)
		r.Host = host
		w := httptest.NewRecorder()
		before := served
		g.ServeHTTP(w, r)
		switch {
		case allow && (served != before+1 || w.Code != 200):
			t.Errorf("Host %q: not served (%d)", host, w.Code)
		case !allow && (served != before || w.Code != http.StatusMisdirectedRequest ||
			!strings.Contains(w.Body.String(), `"code":"`+HostCode+`"`) ||
			!strings.Contains(w.Body.String(), "RUNTIME_ALLOWED_HOSTS") ||
			w.Header().Get("X-Content-Type-Options") != "nosniff" || w.Header().Get("Cache-Control") != "no-store"):
			t.Errorf("Host %q: answered %d %s %v, want 421 %s and no call", host, w.Code, w.Body, w.Header(), HostCode)
		}
	}
}

func TestPolicyWithSetting(t *testing.T) {
	p := Policy{}.WithSetting("RUNTIME_ALLOWED_ORIGINS")
	r := httptest.NewRequest("POST", "/api/admin/v1/plugins/x/stop", nil)
	r.Host = "127.0.0.1:8000"
	r.Header.Set("Origin", "http://evil.example")
	w := httptest.NewRecorder()
	if p.Check(w, r) || w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), "RUNTIME_ALLOWED_ORIGINS") {
		t.Fatalf("answered %d %s, want 403 naming RUNTIME_ALLOWED_ORIGINS", w.Code, w.Body)
	}
	w = httptest.NewRecorder()
	if (Policy{}).Check(w, r) || !strings.Contains(w.Body.String(), "CLIENT_MANAGER_ALLOWED_ORIGINS") {
		t.Fatalf("zero policy answered %s, want it to name CLIENT_MANAGER_ALLOWED_ORIGINS", w.Body)
	}
}
