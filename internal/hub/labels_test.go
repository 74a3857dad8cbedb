package hub_test

import (
	"context"
	"maps"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/home-console/client-manager/internal/fleet"
	"github.com/home-console/client-manager/internal/hub"
	"github.com/home-console/client-manager/internal/hub/hubtest"
	"github.com/home-console/client-manager/pkg/agentproto"
)

// TestHelloKeepsEnrollmentLabels: an agent enrolled with labels connects
// with hellos that carry no labels, other labels, or try to change an
// enrollment label. Its stored labels always hold the enrollment ones
// (plus the last hello's additions), so label selection keeps finding it.
func TestHelloKeepsEnrollmentLabels(t *testing.T) {
	env := hubtest.Start(t, hub.Config{})
	ctx := context.Background()
	token, _, err := env.Enroll.CreateToken(ctx, "labels", 1, 0, "test")
	if err != nil {
		t.Fatal(err)
	}
	enrolled := map[string]string{"room": "lab", "tier": "db"}
	resp, err := env.Enroll.Enroll(ctx, agentproto.EnrollRequest{Token: token, Name: "db-1", Labels: enrolled}, "127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	with := func(extra map[string]string) map[string]string {
		m := maps.Clone(enrolled)
		maps.Copy(m, extra)
		return m
	}
	tests := []struct {
		name  string
		hello map[string]string
		want  map[string]string
	}{
		{"hello without labels", nil, enrolled},
		{"hello adds a host label", map[string]string{"gpu": "none"}, with(map[string]string{"gpu": "none"})},
		{"hello tries to change an enrollment label", map[string]string{"room": "attic", "gpu": "a100"}, with(map[string]string{"gpu": "a100"})},
		{"next hello without labels", nil, enrolled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			connectWithLabels(t, env, resp.Credential, tt.hello)
			a, err := env.Store.Agent(ctx, resp.AgentID)
			if err != nil || !maps.Equal(a.Labels, tt.want) {
				t.Fatalf("stored labels = %v, %v; want %v", a.Labels, err, tt.want)
			}
			got, n, err := env.Store.ListAgents(ctx, fleet.AgentFilter{Labels: map[string]string{"room": "lab"}})
			if err != nil || n != 1 || got[0].ID != resp.AgentID {
				t.Fatalf("agents with room=lab = %v (%d), %v; want the enrolled agent", got, n, err)
			}
		})
	}
}

// connectWithLabels opens a connection whose hello carries labels, waits
// for welcome, and closes it.
func connectWithLabels(t *testing.T, env *hubtest.Env, credential string, labels map[string]string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a, _, err := env.Dial(ctx, credential)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Conn.CloseNow()
	if err := a.Send(ctx, agentproto.TypeHello, "h", agentproto.Hello{Hostname: "db-1", Labels: labels}); err != nil {
		t.Fatal(err)
	}
	a.Expect(t, agentproto.TypeWelcome, nil)
	_ = a.Conn.Close(websocket.StatusNormalClosure, "done")
	hubtest.Eventually(t, 5*time.Second, "connection released", func() bool { return env.Hub.Connections() == 0 })
}
