package cmservice

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/home-console/client-manager/pkg/agentproto"
)

// TestStopDrainsAgentsAndKeepsWork stops the service while an agent is
// connected and a command is in flight: the agent gets close 1001, and a
// service started again on the same data directory still has the command,
// live, to deliver when the agent comes back.
func TestStopDrainsAgentsAndKeepsWork(t *testing.T) {
	dataDir := t.TempDir()
	svc, base := startService(t, Config{DataDir: dataDir})
	code, tok := call(t, "POST", base+"/api/enrollment-tokens", `{"name":"drain","uses":1}`)
	if code != http.StatusCreated {
		t.Fatalf("token = %d", code)
	}
	code, enrolled := call(t, "POST", base+agentproto.PathEnroll, `{"token":"`+tok["token"].(string)+`"}`)
	if code != http.StatusCreated {
		t.Fatalf("enroll = %d %v", code, enrolled)
	}
	id, cred := enrolled["agent_id"].(string), enrolled["credential"].(string)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn := dialAgent(ctx, t, base, cred)
	code, cmd := call(t, "POST", base+"/api/commands/"+id+"/async", `{"command":"uname","timeout":"5m"}`)
	if code != http.StatusAccepted {
		t.Fatalf("async = %d %v", code, cmd)
	}
	if env := readEnvelope(ctx, t, conn); env.Type != agentproto.TypeCommandRequest {
		t.Fatalf("want command_request, got %+v", env)
	}

	stopped := make(chan error, 1)
	go func() { stopped <- svc.Stop(ctx, "test") }()
	_, _, err := conn.Read(ctx)
	var ce websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.StatusGoingAway {
		t.Fatalf("agent read after Stop: %v, want close 1001", err)
	}
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}

	_, base2 := startService(t, Config{DataDir: dataDir})
	code, got := call(t, "GET", base2+"/api/commands/"+cmd["id"].(string), "")
	if code != http.StatusOK || got["status"] != "dispatched" {
		t.Fatalf("command after restart = %d %v, want it still dispatched", code, got)
	}
	conn2 := dialAgent(ctx, t, base2, cred)
	if env := readEnvelope(ctx, t, conn2); env.Type != agentproto.TypeCommandRequest || !strings.Contains(string(env.Data), cmd["id"].(string)) {
		t.Fatalf("after reconnect want the same command_request, got %+v", env)
	}
}

// dialAgent connects a bare protocol client and completes hello.
func dialAgent(ctx context.Context, t *testing.T, base, cred string) *websocket.Conn {
	t.Helper()
	conn, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(base, "http")+agentproto.PathWebSocket, &websocket.DialOptions{
		Subprotocols: []string{agentproto.Subprotocol},
		HTTPHeader:   http.Header{"Authorization": {"Bearer " + cred}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.CloseNow() })
	hello, _ := json.Marshal(agentproto.Envelope{Type: agentproto.TypeHello, Data: json.RawMessage(`{"hostname":"h","os":"linux","arch":"amd64","version":"t"}`)})
	if err := conn.Write(ctx, websocket.MessageText, hello); err != nil {
		t.Fatal(err)
	}
	if env := readEnvelope(ctx, t, conn); env.Type != agentproto.TypeWelcome {
		t.Fatalf("want welcome, got %+v", env)
	}
	return conn
}

func readEnvelope(ctx context.Context, t *testing.T, conn *websocket.Conn) agentproto.Envelope {
	t.Helper()
	_, b, err := conn.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var env agentproto.Envelope
	if err := json.Unmarshal(b, &env); err != nil {
		t.Fatalf("frame %q: %v", b, err)
	}
	return env
}
