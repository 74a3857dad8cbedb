package origin

import (
	"net/http/httptest"
	"strings"
	"testing"
)

func TestAllowed(t *testing.T) {
	p, err := New([]string{"console.example.com", " *.ops.example.com:8443 ", "https://secure.example.com", ""})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		origin, host string
		want         bool
	}{
		{"", "cm.example.com:10000", true},
		{"http://cm.example.com:10000", "cm.example.com:10000", true},
		{"HTTP://CM.example.com:10000", "cm.example.com:10000", true},
		{"https://evil.example", "cm.example.com:10000", false},
		{"null", "cm.example.com:10000", false},
		{"http://cm.example.com", "cm.example.com:10000", false},
		{"https://console.example.com", "cm.example.com:10000", true},
		{"https://Console.Example.com", "cm.example.com:10000", true},
		{"https://a.ops.example.com:8443", "cm.example.com:10000", true},
		{"https://a.ops.example.com", "cm.example.com:10000", false},
		{"https://secure.example.com", "cm.example.com:10000", true},
		{"http://secure.example.com", "cm.example.com:10000", false},
		{"http://[::1", "cm.example.com:10000", false},
	}
	for _, tt := range tests {
		r := httptest.NewRequest("GET", "/ws", nil)
		r.Host = tt.host
		if tt.origin != "" {
			r.Header.Set("Origin", tt.origin)
		}
		if got := p.Allowed(r); got != tt.want {
			t.Errorf("Origin %q Host %q: allowed = %v, want %v", tt.origin, tt.host, got, tt.want)
		}
	}
	if got := p.Patterns(); len(got) != 3 {
		t.Errorf("patterns = %q, want 3 (blank ones dropped)", got)
	}
}

func TestZeroPolicyAllowsOnlySameOrigin(t *testing.T) {
	var p Policy
	r := httptest.NewRequest("GET", "/ws", nil)
	r.Host = "cm:10000"
	r.Header.Set("Origin", "http://elsewhere:10000")
	if p.Allowed(r) {
		t.Fatal("zero policy allowed a cross-origin request")
	}
}

func TestBadPattern(t *testing.T) {
	if _, err := New([]string{"[a-"}); err == nil {
		t.Fatal("malformed pattern accepted")
	}
}

func TestCheckAnswers403(t *testing.T) {
	var p Policy
	for origin, allow := range map[string]bool{"": true, "http://cm:10000": true, "https://evil.example": false} {
		r := httptest.NewRequest("POST", "/api/enroll", nil)
		r.Host = "cm:10000"
		if origin != "" {
			r.Header.Set("Origin", origin)
		}
		w := httptest.NewRecorder()
		got := p.Check(w, r)
		switch {
		case got != allow:
			t.Errorf("Origin %q: Check = %v, want %v", origin, got, allow)
		case allow && w.Body.Len() != 0:
			t.Errorf("Origin %q: allowed, but Check wrote %q", origin, w.Body)
		case !allow && (w.Code != 403 || !strings.Contains(w.Body.String(), `"code":"`+Code+`"`)):
			t.Errorf("Origin %q: answered %d %s, want 403 %s", origin, w.Code, w.Body, Code)
		}
	}
}
