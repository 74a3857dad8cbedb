// Package hubtest runs a real client-manager agent endpoint for tests: an
// SQLite store in a temporary directory, the enrollment service and the
// hub behind an httptest server, and a minimal WebSocket agent to drive it.
package hubtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/home-console/client-manager/internal/enroll"
	"github.com/home-console/client-manager/internal/events"
	"github.com/home-console/client-manager/internal/fleet"
	"github.com/home-console/client-manager/internal/hub"
	"github.com/home-console/client-manager/internal/sqlite"
	"github.com/home-console/client-manager/pkg/agentproto"
)

// Env is a running agent endpoint.
type Env struct {
	Store  *sqlite.Store
	Bus    *events.Bus
	Enroll *enroll.Service
	Hub    *hub.Hub
	Server *httptest.Server
	// WSURL is the ws:// address of the agent endpoint.
	WSURL string
	Log   *slog.Logger
}

// Start runs an Env with cfg until the test ends.
func Start(t testing.TB, cfg hub.Config) *Env {
	t.Helper()
	return StartWith(t, cfg, nil)
}

// StartWith is Start with the hub's store wrapped by wrap (if not nil),
// e.g. to count or fail store calls; Env.Store is the unwrapped store.
func StartWith(t testing.TB, cfg hub.Config, wrap func(fleet.Store) fleet.Store) *Env {
	t.Helper()
	ctx := context.Background()
	store, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "cm.db"))
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	bus := events.New()
	en := enroll.New(store, bus, log, enroll.Options{AttemptsPerMinute: 600})
	var hs fleet.Store = store
	if wrap != nil {
		hs = wrap(store)
	}
	h := hub.New(cfg, en, hs, bus, log)
	mux := http.NewServeMux()
	mux.Handle(agentproto.PathWebSocket, h.Handler())
	mux.Handle(agentproto.PathEnroll, en.Handler())
	srv := httptest.NewServer(mux)
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := h.Shutdown(sctx); err != nil {
			t.Errorf("hub shutdown: %v", err)
		}
		srv.Close()
		_ = store.Close()
	})
	return &Env{
		Store: store, Bus: bus, Enroll: en, Hub: h, Server: srv, Log: log,
		WSURL: "ws" + strings.TrimPrefix(srv.URL, "http") + agentproto.PathWebSocket,
	}
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// NewAgent enrolls an agent through the service (not HTTP, so the
// per-IP enrollment limit does not apply) and returns its id and
// credential.
func (e *Env) NewAgent(t testing.TB, name string) (id, credential string) {
	t.Helper()
	ctx := context.Background()
	token, _, err := e.Enroll.CreateToken(ctx, "test", 1, 0, "test")
	if err != nil {
		t.Fatalf("create token: %v", err)
	}
	resp, err := e.Enroll.Enroll(ctx, agentproto.EnrollRequest{Token: token, Name: name, Hostname: name}, "127.0.0.1:1")
	if err != nil {
		t.Fatalf("enroll: %v", err)
	}
	return resp.AgentID, resp.Credential
}

// PostJSON posts body to the endpoint's path and returns the status and
// decoded JSON response.
func (e *Env) PostJSON(t testing.TB, path, body string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Post(e.Server.URL+path, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("POST %s: decode response: %v", path, err)
	}
	return resp.StatusCode, out
}

// Agent is a bare protocol client.
type Agent struct {
	Conn    *websocket.Conn
	pending []agentproto.Envelope // read by Connect, returned by Read first
}

// Dial connects with credential ("" sends no Authorization header). On a
// refused upgrade it returns the response, with its body readable.
func (e *Env) Dial(ctx context.Context, credential string) (*Agent, *http.Response, error) {
	h := http.Header{}
	if credential != "" {
		h.Set("Authorization", "Bearer "+credential)
	}
	c, resp, err := websocket.Dial(ctx, e.WSURL, &websocket.DialOptions{
		Subprotocols: []string{agentproto.Subprotocol},
		HTTPHeader:   h,
	})
	if err != nil {
		return nil, resp, err
	}
	c.SetReadLimit(-1)
	return &Agent{Conn: c}, resp, nil
}

// Connect dials and completes hello, failing the test otherwise. It
// returns once the hub has finished handling the hello, including the
// CommandSink's Connected: it sends a heartbeat and waits for its ack,
// keeping whatever arrived before the ack for the next Read.
func (e *Env) Connect(t testing.TB, credential string, running ...string) *Agent {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a, _, err := e.Dial(ctx, credential)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = a.Conn.CloseNow() })
	if err := a.Send(ctx, agentproto.TypeHello, "h1", agentproto.Hello{Hostname: "test", OS: "linux", Arch: "amd64", Version: "t", Running: running}); err != nil {
		t.Fatalf("send hello: %v", err)
	}
	env, err := a.Read(ctx)
	if err != nil || env.Type != agentproto.TypeWelcome {
		t.Fatalf("want welcome, got %+v, %v", env, err)
	}
	if err := a.Send(ctx, agentproto.TypeHeartbeat, "connect-sync", nil); err != nil {
		t.Fatalf("send heartbeat: %v", err)
	}
	var early []agentproto.Envelope
	for {
		env, err := a.Read(ctx)
		if err != nil {
			t.Fatalf("want heartbeat_ack: %v", err)
		}
		if env.Type == agentproto.TypeHeartbeatAck && env.ID == "connect-sync" {
			break
		}
		early = append(early, env)
	}
	a.pending = early
	return a
}

// Send writes one envelope.
func (a *Agent) Send(ctx context.Context, typ, id string, data any) error {
	env := agentproto.Envelope{Type: typ, ID: id}
	if data != nil {
		raw, err := json.Marshal(data)
		if err != nil {
			return err
		}
		env.Data = raw
	}
	b, err := json.Marshal(env)
	if err != nil {
		return err
	}
	return a.Conn.Write(ctx, websocket.MessageText, b)
}

// Read reads one envelope.
func (a *Agent) Read(ctx context.Context) (agentproto.Envelope, error) {
	if len(a.pending) > 0 {
		env := a.pending[0]
		a.pending = a.pending[1:]
		return env, nil
	}
	typ, b, err := a.Conn.Read(ctx)
	if err != nil {
		return agentproto.Envelope{}, err
	}
	if typ != websocket.MessageText {
		return agentproto.Envelope{}, fmt.Errorf("got a %v frame", typ)
	}
	var env agentproto.Envelope
	if err := json.Unmarshal(b, &env); err != nil {
		return agentproto.Envelope{}, err
	}
	return env, nil
}

// Expect reads the next envelope, skipping heartbeat acks and the types
// in skip, and decodes its data into v if v is not nil; it fails the test
// unless the type is typ.
func (a *Agent) Expect(t testing.TB, typ string, v any, skip ...string) agentproto.Envelope {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		env, err := a.Read(ctx)
		if err != nil {
			t.Fatalf("want %s: %v", typ, err)
		}
		if env.Type != typ && (env.Type == agentproto.TypeHeartbeatAck || slices.Contains(skip, env.Type)) {
			continue
		}
		if env.Type != typ {
			t.Fatalf("want %s, got %s %s", typ, env.Type, env.Data)
		}
		if v != nil {
			if err := json.Unmarshal(env.Data, v); err != nil {
				t.Fatalf("decode %s: %v", typ, err)
			}
		}
		return env
	}
}

// CloseStatus reads (discarding messages) until the connection ends and
// returns its close code and reason; -1 if it ended without a close frame.
func (a *Agent) CloseStatus(ctx context.Context) (websocket.StatusCode, string) {
	for {
		_, _, err := a.Conn.Read(ctx)
		if err == nil {
			continue
		}
		var ce websocket.CloseError
		if errors.As(err, &ce) {
			return ce.Code, ce.Reason
		}
		return -1, err.Error()
	}
}

// ErrorCode returns the error code of a refused upgrade's JSON body.
func ErrorCode(resp *http.Response) string {
	if resp == nil {
		return ""
	}
	b, _ := io.ReadAll(resp.Body)
	var body struct {
		Error struct{ Code string } `json:"error"`
	}
	if err := json.Unmarshal(bytes.TrimSpace(b), &body); err != nil {
		return "unparsable: " + string(b)
	}
	return body.Error.Code
}

// Eventually polls cond every 10ms until it holds or timeout passes.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
