package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/home-console/client-manager/internal/hub/hubtest"
	"github.com/home-console/client-manager/pkg/agentproto"
)

// wsURL is the agent WebSocket endpoint.
func (s *badSuite) wsURL() string {
	return "ws" + strings.TrimPrefix(s.cm, "http") + agentproto.PathWebSocket
}

// dial opens an agent WebSocket with the given credential ("" for none)
// and extra headers (name, value pairs).
func (s *badSuite) dial(ctx context.Context, credential string, subprotocol bool, headers ...string) (*websocket.Conn, *http.Response, error) {
	h := http.Header{}
	if credential != "" {
		h.Set("Authorization", "Bearer "+credential)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		h.Set(headers[i], headers[i+1])
	}
	opts := &websocket.DialOptions{HTTPHeader: h}
	if subprotocol {
		opts.Subprotocols = []string{agentproto.Subprotocol}
	}
	return websocket.Dial(ctx, s.wsURL(), opts)
}

// upgradeCall is a refused upgrade: credential picks the Authorization
// ("good", "revoked", or a literal credential).
func upgradeCall(name, credential string, subprotocol bool, status int, code string, headers ...string) badCase {
	return badCase{"websocket", name, func(t *testing.T, s *badSuite) {
		switch credential {
		case "good":
			credential = s.credential
		case "revoked":
			credential = s.revokedCred
		case "wrong secret":
			credential = s.agentID + ".wrong-secret"
		}
		c, resp, err := s.dial(ctxFor(t, 5*time.Second), credential, subprotocol, headers...)
		if err == nil {
			_ = c.CloseNow()
			t.Fatal("upgrade accepted")
		}
		if resp == nil || resp.StatusCode != status || hubtest.ErrorCode(resp) != code {
			t.Fatalf("got %v %v, want %d %q", resp, err, status, code)
		}
	}}
}

// session connects as the suite's agent, says hello if hello is set, does
// act and expects the server to close with code.
func session(name string, hello bool, act func(ctx context.Context, a *hubtest.Agent) error, code websocket.StatusCode) badCase {
	return badCase{"websocket", name, func(t *testing.T, s *badSuite) {
		ctx := ctxFor(t, 10*time.Second)
		a := s.connect(t, ctx, hello)
		if err := act(ctx, a); err != nil {
			t.Fatal(err)
		}
		if got, reason := a.CloseStatus(ctx); got != code {
			t.Fatalf("closed with %d %q, want %d", got, reason, code)
		}
	}}
}

// replyCall sends frame after hello and expects an error reply with code,
// after which the connection still answers heartbeats.
func replyCall(name, frame, code string) badCase {
	return badCase{"websocket", name, func(t *testing.T, s *badSuite) {
		ctx := ctxFor(t, 10*time.Second)
		a := s.connect(t, ctx, true)
		defer a.Conn.CloseNow()
		if err := a.Conn.Write(ctx, websocket.MessageText, []byte(frame)); err != nil {
			t.Fatal(err)
		}
		var e agentproto.Error
		a.Expect(t, agentproto.TypeError, &e)
		if e.Code != code {
			t.Fatalf("error reply %+v, want code %q", e, code)
		}
		if err := a.Send(ctx, agentproto.TypeHeartbeat, "alive", nil); err != nil {
			t.Fatal(err)
		}
		if ack := a.Expect(t, agentproto.TypeHeartbeatAck, nil); ack.ID != "alive" {
			t.Fatalf("heartbeat_ack for %q", ack.ID)
		}
	}}
}

// connect dials as the suite's agent and, if hello is set, completes
// hello.
func (s *badSuite) connect(t *testing.T, ctx context.Context, hello bool) *hubtest.Agent {
	t.Helper()
	c, _, err := s.dial(ctx, s.credential, true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.CloseNow() })
	c.SetReadLimit(-1)
	a := &hubtest.Agent{Conn: c}
	if hello {
		if err := a.Send(ctx, agentproto.TypeHello, "h", agentproto.Hello{Hostname: "bad", OS: "linux"}); err != nil {
			t.Fatal(err)
		}
		a.Expect(t, agentproto.TypeWelcome, nil)
	}
	return a
}

func write(typ websocket.MessageType, frame string) func(context.Context, *hubtest.Agent) error {
	return func(ctx context.Context, a *hubtest.Agent) error { return a.Conn.Write(ctx, typ, []byte(frame)) }
}

func wsCases() []badCase {
	return []badCase{
		upgradeCall("no credential", "", true, 401, "unauthorized"),
		upgradeCall("malformed credential", "garbage", true, 401, "unauthorized"),
		upgradeCall("wrong secret", "wrong secret", true, 401, "unauthorized"),
		upgradeCall("unknown agent", "agt_00000000000000000000000a.secret", true, 401, "unauthorized"),
		upgradeCall("revoked credential", "revoked", true, 401, "revoked"),
		upgradeCall("missing subprotocol", "good", false, 400, "subprotocol_required"),
		upgradeCall("wrong subprotocol", "good", false, 400, "subprotocol_required", "Sec-WebSocket-Protocol", "cm.agent.v0"),
		upgradeCall("cross-origin browser", "good", true, 403, "origin_not_allowed", "Origin", "https://evil.example"),
		{"websocket", "plain GET", func(t *testing.T, s *badSuite) {
			s.expect(t, send(t, "GET", s.cm+"/ws", nil, "Authorization", "Bearer "+s.credential), 426, "upgrade_required")
		}},
		{"websocket", "POST", func(t *testing.T, s *badSuite) {
			s.expect(t, send(t, "POST", s.cm+"/ws", strings.NewReader("{}")), 405, "method_not_allowed")
		}},
		session("oversized frame", true, write(websocket.MessageText, `{"type":"heartbeat","id":"`+strings.Repeat("x", 100<<10)+`"}`), agentproto.CloseTooBig),
		session("binary frame", true, write(websocket.MessageBinary, "\x00\x01\x02"), agentproto.CloseUnsupported),
		session("not JSON", true, write(websocket.MessageText, "hello there"), agentproto.CloseInvalidData),
		session("envelope without type", true, write(websocket.MessageText, `{"id":"1","data":{}}`), agentproto.CloseInvalidData),
		session("first message not hello", false, write(websocket.MessageText, `{"type":"heartbeat"}`), agentproto.ClosePolicy),
		session("invalid hello data", false, write(websocket.MessageText, `{"type":"hello","data":{"labels":[1]}}`), agentproto.CloseInvalidData),
		session("no hello", false, func(context.Context, *hubtest.Agent) error { return nil }, agentproto.ClosePolicy),
		session("message flood", true, func(ctx context.Context, a *hubtest.Agent) error {
			for range 1000 {
				if err := a.Send(ctx, agentproto.TypeHeartbeat, "", nil); err != nil {
					return nil // closed by the server mid-flood
				}
			}
			return nil
		}, agentproto.CloseRateLimited),
		replyCall("unknown type", `{"type":"telemetry_v9","id":"t1","data":{"cpu":3}}`, "unknown_type"),
		replyCall("result without command id", `{"type":"command_result","id":"r1","data":{"status":"completed"}}`, "invalid_data"),
		replyCall("output with wrong types", `{"type":"command_output","data":{"command_id":7,"seq":"x"}}`, "invalid_data"),
		replyCall("second hello", `{"type":"hello","data":{}}`, "unexpected_hello"),
	}
}

// ctxFor returns a context cancelled after d or when the test ends.
func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// strictWSCases are agent frames the strict decoding refuses with 1007.
func strictWSCases() []badCase {
	text := func(frame string) func(context.Context, *hubtest.Agent) error {
		return write(websocket.MessageText, frame)
	}
	return []badCase{
		session("duplicate type key", true, text(`{"type":"heartbeat","type":"hello","data":{}}`), agentproto.CloseInvalidData),
		session("type key in the wrong case", true, text(`{"Type":"heartbeat","id":"x"}`), agentproto.CloseInvalidData),
		session("duplicate key deep in unknown data", true, text(`{"type":"heartbeat","data":{"x":[{"k":1,"k":2}]}}`), agentproto.CloseInvalidData),
		session("invalid UTF-8 in a frame", true, text("{\"type\":\"heartbeat\",\"id\":\"\xff\"}"), agentproto.CloseInvalidData),
		session("lone surrogate in a frame", true, text(`{"type":"heartbeat","id":"\udc00"}`), agentproto.CloseInvalidData),
		session("hello with two hostnames", false, text(`{"type":"hello","data":{"hostname":"a","hostname":"b"}}`), agentproto.CloseInvalidData),
		refusedResult("result with two statuses", `{"command_id":%q,"status":"failed","status":"completed","exit_code":0}`),
		refusedResult("result with a status key in the wrong case", `{"command_id":%q,"Status":"completed","exit_code":0}`),
		replyCall("output on an unknown stream", `{"type":"command_output","id":"o1","data":{"command_id":"cmd_x","stream":"stdin","data":"x"}}`, "invalid_data"),
	}
}

// refusedResult runs a command on the suite's agent, answers it with a
// command_result whose data (dataFormat with the command id) breaks the
// strictness rules, and expects close 1007 with the command not finished:
// the refused result was not stored. A proper result sent after
// reconnecting is then stored as usual.
func refusedResult(name, dataFormat string) badCase {
	return badCase{"websocket", name, func(t *testing.T, s *badSuite) {
		ctx := ctxFor(t, 10*time.Second)
		a := s.connect(t, ctx, true)
		id := s.startCommand(t, a)
		frame := `{"type":"command_result","id":"r1","data":` + fmt.Sprintf(dataFormat, id) + `}`
		if err := a.Conn.Write(ctx, websocket.MessageText, []byte(frame)); err != nil {
			t.Fatal(err)
		}
		if code, reason := a.CloseStatus(ctx); code != agentproto.CloseInvalidData || !strings.HasPrefix(reason, "frame refused: ") {
			t.Fatalf("closed with %d %q, want %d frame refused", code, reason, agentproto.CloseInvalidData)
		}
		if st := s.commandStatus(t, id); st != "dispatched" && st != "running" {
			t.Fatalf("command %s is %s after the refused result, want it still live", id, st)
		}
		again := s.connect(t, ctx, true)
		now := time.Now().UTC()
		res := agentproto.CommandResult{CommandID: id, Status: agentproto.ResultCompleted, StartedAt: now, FinishedAt: now}
		if err := again.Send(ctx, agentproto.TypeCommandResult, "r2", res); err != nil {
			t.Fatal(err)
		}
		again.Expect(t, agentproto.TypeResultAck, nil, agentproto.TypeCommandRequest, agentproto.TypeCommandCancel)
		if st := s.commandStatus(t, id); st != "completed" {
			t.Fatalf("command %s is %s after a proper result, want completed", id, st)
		}
	}}
}

// startCommand submits a command to the suite's agent, connected as a,
// and returns its id once a has received it.
func (s *badSuite) startCommand(t *testing.T, a *hubtest.Agent) string {
	t.Helper()
	var cmd struct{ ID string }
	s.mustJSON(t, s.api(t, "POST", "/api/commands/"+s.agentID+"/async", "admin", `{"command":"uname"}`), http.StatusAccepted, &cmd)
	for {
		var req agentproto.CommandRequest
		a.Expect(t, agentproto.TypeCommandRequest, &req, agentproto.TypeCommandCancel)
		if req.CommandID == cmd.ID {
			return cmd.ID
		}
	}
}

// commandStatus is the status of command id.
func (s *badSuite) commandStatus(t *testing.T, id string) string {
	t.Helper()
	var cmd struct{ Status string }
	s.mustJSON(t, s.api(t, "GET", "/api/commands/"+id, "admin", ""), http.StatusOK, &cmd)
	return cmd.Status
}
