package hub_test

import (
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/home-console/client-manager/internal/hub"
	"github.com/home-console/client-manager/internal/hub/hubtest"
	"github.com/home-console/client-manager/internal/origin"
	"github.com/home-console/client-manager/pkg/agentproto"
)

// TestBrowserOrigins: a web page of another origin cannot open an agent
// WebSocket, even with a valid credential, unless its origin is allowed;
// agents (no Origin header) and same-origin pages are unaffected.
func TestBrowserOrigins(t *testing.T) {
	allowed, err := origin.New([]string{"https://console.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	env := hubtest.Start(t, hub.Config{Origins: allowed})
	_, cred := env.NewAgent(t, "a")
	u, _ := url.Parse(env.Server.URL)
	for _, tc := range []struct {
		name, origin string
		status       int
	}{
		{"agent without Origin", "", http.StatusSwitchingProtocols},
		{"same origin", "http://" + u.Host, http.StatusSwitchingProtocols},
		{"allowed origin", "https://console.example.com", http.StatusSwitchingProtocols},
		{"cross origin", "https://evil.example", http.StatusForbidden},
		{"allowed host, other scheme", "http://console.example.com", http.StatusForbidden},
		{"opaque origin", "null", http.StatusForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{"Authorization": {"Bearer " + cred}}
			if tc.origin != "" {
				h.Set("Origin", tc.origin)
			}
			c, resp, err := websocket.Dial(ctxT(t, 5*time.Second), env.WSURL, &websocket.DialOptions{
				Subprotocols: []string{agentproto.Subprotocol}, HTTPHeader: h,
			})
			if c != nil {
				_ = c.CloseNow()
			}
			if resp == nil || resp.StatusCode != tc.status {
				t.Fatalf("got %v %v, want %d", resp, err, tc.status)
			}
			if tc.status == http.StatusForbidden && hubtest.ErrorCode(resp) != "origin_not_allowed" {
				t.Fatalf("code %q, want origin_not_allowed", hubtest.ErrorCode(resp))
			}
		})
	}
	hubtest.Eventually(t, 5*time.Second, "slots released", func() bool { return env.Hub.Connections() == 0 })
}
