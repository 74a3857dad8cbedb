package access

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"

	"github.com/home-console/client-manager/internal/httpjson"
)

// staticTokens knows a fixed set of tokens.
type staticTokens map[string]Role

func (s staticTokens) Authenticate(_ context.Context, token string) (Principal, error) {
	r, ok := s[token]
	if !ok {
		return Principal{}, ErrInvalidToken
	}
	return Principal{Name: "tok-" + r.String(), Role: r}, nil
}

func (s staticTokens) Configured(context.Context) (bool, error) { return len(s) > 0, nil }

func TestAuthenticateAndRequire(t *testing.T) {
	some := staticTokens{"v": RoleViewer, "o": RoleOperator, "a": RoleAdmin}
	none := staticTokens{}
	tests := []struct {
		name   string
		tokens staticTokens
		remote string
		auth   string
		need   Role
		want   int
	}{
		{"loopback without tokens is admin", none, "127.0.0.1:5000", "", RoleAdmin, 200},
		{"ipv6 loopback without tokens", none, "[::1]:5000", "", RoleAdmin, 200},
		{"remote without tokens", none, "192.0.2.10:5000", "", RoleViewer, 401},
		{"loopback peer addressing another host (DNS rebinding)", none, "127.0.0.1:5000", "", RoleViewer, 401},
		{"loopback once tokens exist", some, "127.0.0.1:5000", "", RoleViewer, 401},
		{"viewer reads", some, "192.0.2.10:5000", "Bearer v", RoleViewer, 200},
		{"viewer cannot operate", some, "192.0.2.10:5000", "Bearer v", RoleOperator, 403},
		{"operator cannot administer", some, "192.0.2.10:5000", "Bearer o", RoleAdmin, 403},
		{"admin administers", some, "192.0.2.10:5000", "bearer a", RoleAdmin, 200},
		{"wrong token", some, "127.0.0.1:5000", "Bearer nope", RoleViewer, 401},
		{"wrong token even on loopback without tokens", none, "127.0.0.1:5000", "Bearer nope", RoleViewer, 401},
		{"basic auth refused", some, "192.0.2.10:5000", "Basic dTpw", RoleViewer, 401},
		{"empty bearer", some, "192.0.2.10:5000", "Bearer ", RoleViewer, 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httpjson.NewEngine()
			r.GET("/x", Authenticate(tt.tokens), Require(tt.need), func(c *gin.Context) {
				p, _ := From(c)
				c.String(http.StatusOK, p.Name)
			})
			req := httptest.NewRequest(http.MethodGet, "/x", nil)
			req.RemoteAddr = tt.remote
			req.Host = "localhost:10000"
			if strings.Contains(tt.name, "rebinding") {
				req.Host = "attacker.example:10000"
			}
			req.Header.Set("X-Forwarded-For", "127.0.0.1")
			if tt.auth != "" {
				req.Header.Set("Authorization", tt.auth)
			}
			rec := httptest.NewRecorder()
			r.ServeHTTP(rec, req)
			if rec.Code != tt.want {
				t.Fatalf("status = %d, want %d; body %s", rec.Code, tt.want, rec.Body)
			}
		})
	}
}

func TestLoopbackHost(t *testing.T) {
	for host, want := range map[string]bool{
		"localhost": true, "localhost:10000": true, "LOCALHOST.:80": true, "app.localhost:1": true,
		"127.0.0.1:10000": true, "127.9.9.9": true, "[::1]:10000": true, "::1": true,
		"": false, "example.com": false, "localhost.example.com:10000": false, "10.0.0.1:10000": false,
		"[::2]:10000": false, "evil-localhost:1": false,
	} {
		if got := LoopbackHost(host); got != want {
			t.Errorf("LoopbackHost(%q) = %v, want %v", host, got, want)
		}
	}
}

func TestParseRole(t *testing.T) {
	for _, r := range []Role{RoleViewer, RoleOperator, RoleAdmin} {
		got, err := ParseRole(r.String())
		if err != nil || got != r {
			t.Errorf("ParseRole(%q) = %v, %v", r, got, err)
		}
	}
	if _, err := ParseRole("root"); err == nil {
		t.Error("ParseRole(root) succeeded")
	}
}
