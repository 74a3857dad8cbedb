package cmservice

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/home-console/client-manager/pkg/pluginproto"
)

func TestForwardedCaller(t *testing.T) {
	tests := []struct {
		name       string
		configured string
		sent       string
		forwarded  string
		want       string
	}{
		{"matching token", "s3cret", "s3cret", "192.0.2.7", "192.0.2.7:0"},
		{"ipv6 caller", "s3cret", "s3cret", "2001:db8::1", "[2001:db8::1]:0"},
		{"wrong token", "s3cret", "guess", "192.0.2.7", "127.0.0.1:4000"},
		{"no token sent", "s3cret", "", "192.0.2.7", "127.0.0.1:4000"},
		{"standalone trusts nobody", "", "", "192.0.2.7", "127.0.0.1:4000"},
		{"garbage address", "s3cret", "s3cret", "not-an-ip", "127.0.0.1:4000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var gotAddr string
			var leaked bool
			h := forwardedCaller(tt.configured, http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
				gotAddr = r.RemoteAddr
				leaked = r.Header.Get(pluginproto.HeaderProxyToken) != "" || r.Header.Get(pluginproto.HeaderForwardedFor) != ""
			}))
			req := httptest.NewRequest(http.MethodGet, "/api/clients", nil)
			req.RemoteAddr = "127.0.0.1:4000"
			if tt.sent != "" {
				req.Header.Set(pluginproto.HeaderProxyToken, tt.sent)
			}
			req.Header.Set(pluginproto.HeaderForwardedFor, tt.forwarded)
			h.ServeHTTP(httptest.NewRecorder(), req)
			if gotAddr != tt.want {
				t.Errorf("RemoteAddr = %q, want %q", gotAddr, tt.want)
			}
			if leaked {
				t.Error("proxy headers reached the handler")
			}
		})
	}
}
