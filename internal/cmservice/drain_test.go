package cmservice

import (
	"bufio"
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
	id, cred := enrollAgent(t, base)

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
	// Delivery is at-least-once: the request may come again (sent on
	// submit and by the delivery on connect) before the close.
	var err error
	for err == nil {
		var frame []byte
		if _, frame, err = conn.Read(ctx); err == nil && !strings.Contains(string(frame), cmd["id"].(string)) {
			t.Fatalf("agent got %s before the close", frame)
		}
	}
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

// enrollAgent creates an enrollment token and enrolls an agent with it
// through the API, and returns the agent's id and credential.
func enrollAgent(t *testing.T, base string) (id, credential string) {
	t.Helper()
	code, tok := call(t, "POST", base+"/api/enrollment-tokens", `{"name":"drain","uses":1}`)
	if code != http.StatusCreated {
		t.Fatalf("token = %d", code)
	}
	code, enrolled := call(t, "POST", base+agentproto.PathEnroll, `{"token":"`+tok["token"].(string)+`"}`)
	if code != http.StatusCreated {
		t.Fatalf("enroll = %d %v", code, enrolled)
	}
	return enrolled["agent_id"].(string), enrolled["credential"].(string)
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

// TestStopEndsLongLivedResponses stops the service while event streams and
// a synchronous command wait are open: Stop returns at once without a
// drain error, each stream's last block is "event: shutdown" with the stop
// reason, and the wait answers 202 with the command still live.
func TestStopEndsLongLivedResponses(t *testing.T) {
	svc, base := startService(t, Config{})
	id, cred := enrollAgent(t, base)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn := dialAgent(ctx, t, base, cred)

	var streams []*bufio.Scanner
	for range 3 {
		streams = append(streams, openEvents(ctx, t, base))
	}
	waited := make(chan string, 1)
	go func() {
		res, err := http.Post(base+"/api/commands/"+id+"?wait=5m", "application/json",
			strings.NewReader(`{"command":"uname","timeout":"5m"}`))
		if err != nil {
			waited <- err.Error()
			return
		}
		defer res.Body.Close()
		var cmd struct{ Status string }
		_ = json.NewDecoder(res.Body).Decode(&cmd)
		waited <- res.Status + " " + cmd.Status
	}()
	if env := readEnvelope(ctx, t, conn); env.Type != agentproto.TypeCommandRequest {
		t.Fatalf("want command_request, got %+v", env)
	}
	go func() { // reads until the server's close, which it answers
		for {
			if _, _, err := conn.Read(ctx); err != nil {
				return
			}
		}
	}()

	began := time.Now()
	if err := svc.Stop(ctx, "operator restart"); err != nil {
		t.Fatalf("Stop = %v, want no drain error", err)
	}
	if took := time.Since(began); took > time.Second {
		t.Errorf("Stop took %s with open streams and a wait, want at most 1s", took)
	}
	for i, sc := range streams {
		if last := lastBlock(sc); last != "event: shutdown\n"+`data: {"reason":"operator restart"}` {
			t.Errorf("stream %d ended with %q, want the shutdown event", i, last)
		}
	}
	if got := <-waited; got != "202 Accepted dispatched" {
		t.Errorf("synchronous wait during the drain = %q, want 202 with the command dispatched", got)
	}
}

// openEvents opens GET /api/events and reads its ": connected" comment.
func openEvents(ctx context.Context, t *testing.T, base string) *bufio.Scanner {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/api/events", nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = res.Body.Close() })
	sc := bufio.NewScanner(res.Body)
	if !sc.Scan() || sc.Text() != ": connected" {
		t.Fatalf("stream starts with %q: %v", sc.Text(), sc.Err())
	}
	return sc
}

// lastBlock reads the stream to its end and returns its last non-comment
// block, lines joined by "\n".
func lastBlock(sc *bufio.Scanner) string {
	var block, last []string
	for sc.Scan() {
		switch line := sc.Text(); {
		case line == "" && len(block) > 0:
			last, block = block, nil
		case line != "" && !strings.HasPrefix(line, ":"):
			block = append(block, line)
		}
	}
	return strings.Join(last, "\n")
}
