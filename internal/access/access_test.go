package access

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/home-console/client-manager/internal/fleet"
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

func TestIdentifyAndNeed(t *testing.T) {
	some := staticTokens{"v": RoleViewer, "o": RoleOperator, "a": RoleAdmin}
	none := staticTokens{}
	tests := []struct {
		name   string
		tokens Tokens
		remote string
		auth   string
		need   Role
		want   fleet.ErrorCode // "" for served
	}{
		{"loopback without tokens is admin", none, "127.0.0.1:5000", "", RoleAdmin, ""},
		{"ipv6 loopback without tokens", none, "[::1]:5000", "", RoleAdmin, ""},
		{"remote without tokens", none, "192.0.2.10:5000", "", RoleViewer, fleet.CodeUnauthorized},
		{"loopback peer addressing another host (DNS rebinding)", none, "127.0.0.1:5000", "", RoleViewer, fleet.CodeUnauthorized},
		{"loopback once tokens exist", some, "127.0.0.1:5000", "", RoleViewer, fleet.CodeUnauthorized},
		{"viewer reads", some, "192.0.2.10:5000", "Bearer v", RoleViewer, ""},
		{"viewer cannot operate", some, "192.0.2.10:5000", "Bearer v", RoleOperator, fleet.CodeForbidden},
		{"operator cannot administer", some, "192.0.2.10:5000", "Bearer o", RoleAdmin, fleet.CodeForbidden},
		{"admin administers", some, "192.0.2.10:5000", "bearer a", RoleAdmin, ""},
		{"wrong token", some, "127.0.0.1:5000", "Bearer nope", RoleViewer, fleet.CodeUnauthorized},
		{"wrong token even on loopback without tokens", none, "127.0.0.1:5000", "Bearer nope", RoleViewer, fleet.CodeUnauthorized},
		{"basic auth refused", some, "192.0.2.10:5000", "Basic dTpw", RoleViewer, fleet.CodeUnauthorized},
		{"empty bearer", some, "192.0.2.10:5000", "Bearer ", RoleViewer, fleet.CodeUnauthorized},
		{"token store down", brokenTokens{}, "192.0.2.10:5000", "Bearer v", RoleViewer, fleet.CodeUnavailable},
		{"token store down, no token", brokenTokens{}, "127.0.0.1:5000", "", RoleViewer, fleet.CodeUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
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
			p, err := Identify(req, tt.tokens)
			if err == nil {
				err = p.Need(tt.need)
			}
			if got := fleet.CodeOf(err); got != tt.want {
				t.Fatalf("code = %q (%v), want %q", got, err, tt.want)
			}
			if err == nil && (p.Source == "" || strings.Contains(p.Source, "5000")) {
				t.Fatalf("source = %q for peer %q, want its IP without the port", p.Source, tt.remote)
			}
		})
	}
}

// brokenTokens fails like a store that cannot be read.
type brokenTokens struct{}

func (brokenTokens) Authenticate(context.Context, string) (Principal, error) {
	return Principal{}, errors.New("disk I/O error")
}

func (brokenTokens) Configured(context.Context) (bool, error) {
	return false, errors.New("disk I/O error")
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
