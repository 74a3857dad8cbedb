package agent

// A test double of the client manager's agent endpoint, speaking the
// protocol of package agentproto. It stands in for the real server
// (internal/hub) in this package's tests.

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/home-console/client-manager/pkg/agentproto"
	"github.com/home-console/client-manager/pkg/agentstream"
)

const testCredential = "ag1.secret"

type fakeHub struct {
	t       *testing.T
	srv     *httptest.Server
	welcome agentproto.Welcome
	// beforeUpgrade, if set, may answer the upgrade request itself
	// (returning true) instead of accepting it.
	beforeUpgrade func(w http.ResponseWriter, r *http.Request, n int) bool
	autoAck       atomic.Bool // answer command_result with result_ack
	silent        atomic.Bool // do not answer heartbeats

	attempts atomic.Int32 // upgrade requests seen
	mu       sync.Mutex
	conns    []*hubConn
	connCh   chan *hubConn
}

type hubConn struct {
	hub   *fakeHub
	ws    *websocket.Conn
	at    time.Time
	hello agentproto.Hello
	msgs  chan agentproto.Envelope // everything after hello except heartbeats
	beats chan time.Time
	// closeStatus is the status the agent closed with, once it did.
	closed      chan struct{}
	closeStatus websocket.StatusCode
	// mux is the server side of the streams, when the welcome lists them.
	mux *agentstream.Mux
}

func newFakeHub(t *testing.T) *fakeHub {
	h := &fakeHub{t: t, connCh: make(chan *hubConn, 64), welcome: agentproto.Welcome{
		AgentID: "ag1", HeartbeatIntervalMS: 1000, LivenessTimeoutMS: 3000,
		MaxMessageBytes: 1 << 20, MaxOutputBytes: 1 << 20, ServerVersion: "test",
	}}
	h.autoAck.Store(true)
	h.srv = httptest.NewServer(http.HandlerFunc(h.serveWS))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *fakeHub) serveWS(w http.ResponseWriter, r *http.Request) {
	n := int(h.attempts.Add(1))
	if r.URL.Path != agentproto.PathWebSocket {
		http.NotFound(w, r)
		return
	}
	if h.beforeUpgrade != nil && h.beforeUpgrade(w, r, n) {
		return
	}
	if r.Header.Get("Authorization") != "Bearer "+testCredential {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		w.Write([]byte(`{"error":{"code":"unauthorized","message":"unknown credential"}}`))
		return
	}
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{agentproto.Subprotocol}})
	if err != nil {
		return
	}
	c := &hubConn{hub: h, ws: ws, at: time.Now(), msgs: make(chan agentproto.Envelope, 256),
		beats: make(chan time.Time, 256), closed: make(chan struct{})}
	defer close(c.closed)
	ctx := r.Context()
	env, ok := c.read(ctx)
	if !ok || env.Type != agentproto.TypeHello || json.Unmarshal(env.Data, &c.hello) != nil {
		ws.Close(websocket.StatusPolicyViolation, "hello expected")
		return
	}
	c.send(agentproto.TypeWelcome, h.welcome)
	if slices.Contains(h.welcome.Features, agentproto.FeatureStreams) {
		c.mux = agentstream.New(newWSTransport(ctx, ws), agentstream.Config{
			Window: h.welcome.StreamWindowBytes, Chunk: int(h.welcome.StreamChunkBytes)})
		defer c.mux.Close(agentproto.StreamErrorDisconnected, "test connection ended")
	}
	h.mu.Lock()
	h.conns = append(h.conns, c)
	h.mu.Unlock()
	h.connCh <- c
	c.readLoop(ctx)
}

func (c *hubConn) read(ctx context.Context) (agentproto.Envelope, bool) {
	var env agentproto.Envelope
	typ, b, err := c.ws.Read(ctx)
	for err == nil && typ == websocket.MessageBinary && c.mux != nil {
		if herr := c.mux.HandleData(b); herr != nil {
			c.hub.t.Errorf("agent sent a bad data frame: %v", herr)
		}
		typ, b, err = c.ws.Read(ctx)
	}
	if err != nil {
		c.closeStatus = websocket.CloseStatus(err)
		return env, false
	}
	if json.Unmarshal(b, &env) != nil {
		c.hub.t.Errorf("agent sent a frame that is not an envelope: %q", b)
	}
	return env, true
}

func (c *hubConn) readLoop(ctx context.Context) {
	for {
		env, ok := c.read(ctx)
		if !ok {
			return
		}
		switch env.Type {
		case agentproto.TypeHeartbeat:
			c.beats <- time.Now()
			if !c.hub.silent.Load() {
				c.send(agentproto.TypeHeartbeatAck, nil)
			}
			continue
		case agentproto.TypeStreamOpened, agentproto.TypeStreamCredit, agentproto.TypeStreamClose:
			if c.mux != nil {
				c.handleStream(env)
				continue
			}
		case agentproto.TypeCommandResult:
			if c.hub.autoAck.Load() {
				var res agentproto.CommandResult
				json.Unmarshal(env.Data, &res)
				c.send(agentproto.TypeResultAck, agentproto.CommandRef{CommandID: res.CommandID})
			}
		}
		c.msgs <- env
	}
}

// handleStream passes a stream message to the server's Mux.
func (c *hubConn) handleStream(env agentproto.Envelope) {
	var msg any
	var err error
	switch env.Type {
	case agentproto.TypeStreamOpened:
		msg, err = decodeValue[agentproto.StreamOpened](env)
	case agentproto.TypeStreamCredit:
		msg, err = decodeValue[agentproto.StreamCredit](env)
	default:
		msg, err = decodeValue[agentproto.StreamClose](env)
	}
	if err == nil {
		err = c.mux.Handle(msg)
	}
	if err != nil {
		c.hub.t.Errorf("agent sent a bad %s: %v", env.Type, err)
	}
}

// wsTransport is a server-side agentstream.Transport over the test
// connection: one writer goroutine, control messages ahead of data.
type wsTransport struct {
	ctx  context.Context
	ws   *websocket.Conn
	mu   sync.Mutex
	ctl  []queuedFrame
	data []queuedFrame
	wake chan struct{}
}

func newWSTransport(ctx context.Context, ws *websocket.Conn) *wsTransport {
	t := &wsTransport{ctx: ctx, ws: ws, wake: make(chan struct{}, 1)}
	go t.run()
	return t
}

func (t *wsTransport) SendControl(typ string, data any) error {
	raw, err := json.Marshal(data)
	if err != nil {
		return err
	}
	b, _ := json.Marshal(agentproto.Envelope{Type: typ, ID: "s", Data: raw})
	return t.push(queuedFrame{b: b, text: true}, typ != agentproto.TypeStreamClose)
}

func (t *wsTransport) SendData(frame []byte) error { return t.push(queuedFrame{b: frame}, false) }

func (t *wsTransport) push(f queuedFrame, control bool) error {
	t.mu.Lock()
	if control {
		t.ctl = append(t.ctl, f)
	} else {
		t.data = append(t.data, f)
	}
	t.mu.Unlock()
	select {
	case t.wake <- struct{}{}:
	default:
	}
	return nil
}

func (t *wsTransport) run() {
	for {
		t.mu.Lock()
		var f queuedFrame
		switch {
		case len(t.ctl) > 0:
			f, t.ctl = t.ctl[0], t.ctl[1:]
		case len(t.data) > 0:
			f, t.data = t.data[0], t.data[1:]
		}
		t.mu.Unlock()
		typ := websocket.MessageBinary
		if f.text {
			typ = websocket.MessageText
		}
		if f.b == nil {
			select {
			case <-t.wake:
				continue
			case <-t.ctx.Done():
				return
			}
		}
		if t.ws.Write(t.ctx, typ, f.b) != nil {
			return
		}
	}
}

func (c *hubConn) send(typ string, data any) {
	var raw json.RawMessage
	if data != nil {
		raw, _ = json.Marshal(data)
	}
	b, _ := json.Marshal(agentproto.Envelope{Type: typ, ID: "s1", Data: raw})
	c.ws.Write(context.Background(), websocket.MessageText, b)
}

// next waits for the next connection.
func (h *fakeHub) next(t *testing.T, within time.Duration) *hubConn {
	t.Helper()
	select {
	case c := <-h.connCh:
		return c
	case <-time.After(within):
		t.Fatalf("no agent connection within %s", within)
		return nil
	}
}

// expect waits for the next message of type typ, failing on any other
// type except those listed in skip.
func (c *hubConn) expect(t *testing.T, typ string, data any, skip ...string) agentproto.Envelope {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case env := <-c.msgs:
			if env.Type == typ {
				if data != nil {
					if err := json.Unmarshal(env.Data, data); err != nil {
						t.Fatalf("%s data: %v", typ, err)
					}
				}
				return env
			}
			if !contains(skip, env.Type) {
				t.Fatalf("got %s %s, want %s", env.Type, env.Data, typ)
			}
		case <-timeout:
			t.Fatalf("no %s within 10s", typ)
		}
	}
}

// quiet asserts no message other than those in skip arrives for d.
func (c *hubConn) quiet(t *testing.T, d time.Duration, skip ...string) {
	t.Helper()
	timeout := time.After(d)
	for {
		select {
		case env := <-c.msgs:
			if !contains(skip, env.Type) {
				t.Fatalf("unexpected %s %s", env.Type, env.Data)
			}
		case <-timeout:
			return
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// startAgent runs an agent against the hub until the test ends; the
// returned channel yields Run's result.
func startAgent(t *testing.T, h *fakeHub, cfg Config) (*Agent, context.CancelFunc, <-chan error) {
	t.Helper()
	cfg.ServerURL = h.srv.URL
	if cfg.Credential == "" {
		cfg.Credential = testCredential
	}
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff, cfg.MaxBackoff = 20*time.Millisecond, 200*time.Millisecond
	}
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return a, cancel, runInBackground(t, a, ctx, cancel)
}

func waitRun(t *testing.T, done <-chan error, within time.Duration) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(within):
		t.Fatalf("Run still running after %s", within)
		return nil
	}
}

// runInBackground runs a.Run(ctx) until the test ends; the returned channel
// yields Run's result.
func runInBackground(t *testing.T, a *Agent, ctx context.Context, cancel context.CancelFunc) <-chan error {
	done := make(chan error, 1)
	finished := make(chan struct{})
	go func() {
		done <- a.Run(ctx)
		close(finished)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-finished:
		case <-time.After(10 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
	return done
}
