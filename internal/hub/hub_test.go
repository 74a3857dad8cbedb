package hub_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/gin-gonic/gin"

	"github.com/home-console/client-manager/internal/enroll"
	"github.com/home-console/client-manager/internal/events"
	"github.com/home-console/client-manager/internal/hub"
	"github.com/home-console/client-manager/internal/hub/hubtest"
	"github.com/home-console/client-manager/pkg/agentproto"
)

var _ hub.Authenticator = (*enroll.Service)(nil)

func ctxT(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestUpgradeRefusedBeforeAuth(t *testing.T) {
	env := hubtest.Start(t, hub.Config{})
	id, cred := env.NewAgent(t, "a")
	revokedID, revokedCred := env.NewAgent(t, "r")
	if err := env.Enroll.Revoke(context.Background(), revokedID, "test"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, cred, code string }{
		{"missing", "", "unauthorized"},
		{"malformed", "garbage", "unauthorized"},
		{"wrong secret", id + ".wrong", "unauthorized"},
		{"unknown agent", "agt_00000000000000000000000a.x", "unauthorized"},
		{"revoked", revokedCred, "revoked"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, resp, err := env.Dial(ctxT(t, 5*time.Second), tc.cred)
			if err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("want 401, got %v %v", resp, err)
			}
			if code := hubtest.ErrorCode(resp); code != tc.code {
				t.Fatalf("code %q, want %q", code, tc.code)
			}
		})
	}
	t.Run("no subprotocol", func(t *testing.T) {
		h := http.Header{"Authorization": {"Bearer " + cred}}
		_, resp, err := websocket.Dial(ctxT(t, 5*time.Second), env.WSURL, &websocket.DialOptions{HTTPHeader: h})
		if err == nil || resp.StatusCode != http.StatusBadRequest || hubtest.ErrorCode(resp) != "subprotocol_required" {
			t.Fatalf("want 400 subprotocol_required, got %v %v", resp, err)
		}
	})
	t.Run("plain GET", func(t *testing.T) {
		resp, err := http.Get(env.Server.URL + agentproto.PathWebSocket)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusUpgradeRequired || hubtest.ErrorCode(resp) != "upgrade_required" {
			t.Fatalf("got %d", resp.StatusCode)
		}
	})
	if env.Hub.Connections() != 0 {
		t.Fatalf("refused upgrades hold %d connection slots", env.Hub.Connections())
	}
}

func TestConnectHelloWelcomeAndSession(t *testing.T) {
	env := hubtest.Start(t, hub.Config{HeartbeatInterval: 7 * time.Second, ServerVersion: "9.9"})
	sub := env.Bus.Subscribe(16)
	defer sub.Close()
	id, cred := env.NewAgent(t, "a")
	a, _, err := env.Dial(ctxT(t, 5*time.Second), cred)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Conn.CloseNow()
	if a.Conn.Subprotocol() != agentproto.Subprotocol {
		t.Fatalf("subprotocol %q", a.Conn.Subprotocol())
	}
	if env.Hub.Online(id) {
		t.Fatal("online before hello")
	}
	if err := a.Send(ctxT(t, time.Second), agentproto.TypeHello, "h", agentproto.Hello{Hostname: "box", Version: "1.2"}); err != nil {
		t.Fatal(err)
	}
	var w agentproto.Welcome
	if env := a.Expect(t, agentproto.TypeWelcome, &w); env.ID != "h" {
		t.Fatalf("welcome does not echo the hello id: %+v", env)
	}
	if w.AgentID != id || w.HeartbeatIntervalMS != 7000 || w.LivenessTimeoutMS != 45000 || w.MaxMessageBytes != 1<<20 || w.ServerVersion != "9.9" {
		t.Fatalf("welcome %+v", w)
	}
	waitOnline(t, env, id)
	s, ok := env.Hub.Session(id)
	if !ok || s.RemoteAddr == "" || s.ConnectedAt.IsZero() || env.Hub.Count() != 1 || len(env.Hub.Sessions()) != 1 {
		t.Fatalf("session %+v %v, count %d", s, ok, env.Hub.Count())
	}
	agent, err := env.Store.Agent(context.Background(), id)
	if err != nil || agent.Hostname != "box" || agent.Version != "1.2" || agent.LastAddr != s.RemoteAddr {
		t.Fatalf("stored agent %+v, %v", agent, err)
	}
	waitEvent(t, sub, func(e events.AgentConnected) bool {
		return e.AgentID == id && e.Hostname == "box" && e.Version == "1.2"
	})

	if err := a.Send(ctxT(t, time.Second), agentproto.TypeHeartbeat, "hb1", agentproto.Heartbeat{Time: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if ack := a.Expect(t, agentproto.TypeHeartbeatAck, nil); ack.ID != "hb1" {
		t.Fatalf("ack %+v", ack)
	}
	_ = a.Conn.Close(websocket.StatusNormalClosure, "bye")
	waitEvent(t, sub, func(e events.AgentDisconnected) bool {
		return e.AgentID == id && e.Code == int(websocket.StatusNormalClosure)
	})
	hubtest.Eventually(t, 5*time.Second, "connection released", func() bool { return env.Hub.Connections() == 0 })
	if env.Hub.Online(id) || env.Hub.Count() != 0 {
		t.Fatal("still online after close")
	}
}

// waitEvent waits up to 5s for an event of payload type P that match
// accepts, and returns it.
func waitEvent[P events.Payload](t *testing.T, sub *events.Subscription, match func(P) bool) P {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case e := <-sub.C:
			if p, ok := e.Payload.(P); ok && match(p) {
				return p
			}
		case <-timeout:
			var p P
			t.Fatalf("no matching %s event", p.Type())
		}
	}
}

// waitOnline waits until the hub lists id online: the welcome is queued
// just before that.
func waitOnline(t *testing.T, env *hubtest.Env, id string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !env.Hub.Online(id); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("agent %s not online", id)
		}
	}
}

// TestWelcomeComesFirst sends a command the instant an agent is online:
// the agent still reads the welcome first (it is queued before the agent
// is marked online).
func TestWelcomeComesFirst(t *testing.T) {
	env := hubtest.Start(t, hub.Config{})
	for i := range 30 {
		id, cred := env.NewAgent(t, "first-"+strconv.Itoa(i))
		a, _, err := env.Dial(ctxT(t, 5*time.Second), cred)
		if err != nil {
			t.Fatal(err)
		}
		sent := make(chan error, 1)
		go func() {
			for !env.Hub.Online(id) {
				runtime.Gosched()
			}
			sent <- env.Hub.Send(id, agentproto.Envelope{Type: agentproto.TypeCommandRequest, ID: "c"})
		}()
		if err := a.Send(ctxT(t, time.Second), agentproto.TypeHello, "h", agentproto.Hello{}); err != nil {
			t.Fatal(err)
		}
		a.Expect(t, agentproto.TypeWelcome, nil)
		if err := <-sent; err != nil {
			t.Fatal(err)
		}
		a.Expect(t, agentproto.TypeCommandRequest, nil)
		_ = a.Conn.CloseNow()
	}
}

func TestRevokeClosesOpenSocket(t *testing.T) {
	env := hubtest.Start(t, hub.Config{})
	id, cred := env.NewAgent(t, "a")
	a := env.Connect(t, cred)
	if err := env.Enroll.Revoke(context.Background(), id, "admin"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if !env.Hub.Disconnect(id, agentproto.CloseRevoked, "credential revoked") {
		t.Fatal("Disconnect found no connection")
	}
	if env.Hub.Online(id) {
		t.Fatal("online right after Disconnect")
	}
	code, reason := a.CloseStatus(ctxT(t, 5*time.Second))
	if code != agentproto.CloseRevoked || reason != "credential revoked" || time.Since(start) > time.Second {
		t.Fatalf("close %d %q after %s", code, reason, time.Since(start))
	}
	_, resp, err := env.Dial(ctxT(t, 5*time.Second), cred)
	if err == nil || resp.StatusCode != http.StatusUnauthorized || hubtest.ErrorCode(resp) != "revoked" {
		t.Fatalf("reconnect after revoke: %v %v", resp, err)
	}
}

func TestDuplicateConnectionReplacesOld(t *testing.T) {
	env := hubtest.Start(t, hub.Config{})
	id, cred := env.NewAgent(t, "a")
	old := env.Connect(t, cred)
	oldAddr := mustSession(t, env, id).RemoteAddr
	fresh := env.Connect(t, cred)

	code, reason := old.CloseStatus(ctxT(t, 5*time.Second))
	if code != agentproto.CloseReplaced || !strings.Contains(reason, "replaced") {
		t.Fatalf("old connection closed with %d %q", code, reason)
	}
	// Let the old connection's cleanup run to the end.
	hubtest.Eventually(t, 5*time.Second, "old connection released", func() bool { return env.Hub.Connections() == 1 })
	s := mustSession(t, env, id)
	if s.RemoteAddr == oldAddr || env.Hub.Count() != 1 {
		t.Fatalf("registry holds %+v (old %s), count %d", s, oldAddr, env.Hub.Count())
	}
	if err := env.Hub.Send(id, agentproto.Envelope{Type: "probe", ID: "p1"}); err != nil {
		t.Fatal(err)
	}
	if got := fresh.Expect(t, "probe", nil); got.ID != "p1" {
		t.Fatalf("new connection got %+v", got)
	}
}

func mustSession(t *testing.T, env *hubtest.Env, id string) hub.Session {
	t.Helper()
	s, ok := env.Hub.Session(id)
	if !ok {
		t.Fatalf("%s not online", id)
	}
	return s
}

func TestLivenessTimeoutMarksOffline(t *testing.T) {
	const liveness, sweep = 400 * time.Millisecond, 50 * time.Millisecond
	env := hubtest.Start(t, hub.Config{LivenessTimeout: liveness, SweepInterval: sweep})
	quietID, quietCred := env.NewAgent(t, "quiet")
	busyID, busyCred := env.NewAgent(t, "busy")
	quiet := env.Connect(t, quietCred)
	busy := env.Connect(t, busyCred)
	silentSince := time.Now()

	// busy heartbeats; quiet behaves like a vanished peer: it neither
	// sends nor reads.
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(liveness / 4):
				_ = busy.Send(context.Background(), agentproto.TypeHeartbeat, "", nil)
			}
		}
	}()
	go func() { _, _ = busy.CloseStatus(context.Background()) }() // keep reading acks

	hubtest.Eventually(t, 5*time.Second, "quiet agent offline", func() bool { return !env.Hub.Online(quietID) })
	if took := time.Since(silentSince); took > liveness+2*sweep+500*time.Millisecond {
		t.Fatalf("offline after %s, want within %s + sweep", took, liveness)
	}
	code, _ := quiet.CloseStatus(ctxT(t, 10*time.Second))
	if code != agentproto.CloseLiveness {
		t.Fatalf("quiet agent closed with %d, want %d", code, agentproto.CloseLiveness)
	}
	time.Sleep(2 * liveness)
	if !env.Hub.Online(busyID) {
		t.Fatal("a heartbeating agent was dropped")
	}
}

func TestShutdownClosesWith1001(t *testing.T) {
	env := hubtest.Start(t, hub.Config{})
	_, cred1 := env.NewAgent(t, "a")
	_, cred2 := env.NewAgent(t, "b")
	agents := []*hubtest.Agent{env.Connect(t, cred1), env.Connect(t, cred2)}
	codes := make(chan websocket.StatusCode, len(agents))
	for _, a := range agents {
		go func() {
			code, _ := a.CloseStatus(context.Background())
			codes <- code
		}()
	}
	if err := env.Hub.Shutdown(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	for range agents {
		if code := <-codes; code != agentproto.CloseGoingAway {
			t.Fatalf("closed with %d, want 1001", code)
		}
	}
	if env.Hub.Connections() != 0 || env.Hub.Count() != 0 {
		t.Fatalf("%d connections left", env.Hub.Connections())
	}
	_, resp, err := env.Dial(ctxT(t, 5*time.Second), cred1)
	if err == nil || resp.StatusCode != http.StatusServiceUnavailable || hubtest.ErrorCode(resp) != "shutting_down" {
		t.Fatalf("dial while shut down: %v %v", resp, err)
	}
}

// The service mounts the hub on gin; gin delays writing headers, which the
// upgrade must get through.
func TestHandlerBehindGin(t *testing.T) {
	env := hubtest.Start(t, hub.Config{})
	id, cred := env.NewAgent(t, "a")
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.GET(agentproto.PathWebSocket, gin.WrapH(env.Hub.Handler()))
	srv := httptest.NewServer(r)
	defer srv.Close()
	ginEnv := *env
	ginEnv.WSURL = "ws" + strings.TrimPrefix(srv.URL, "http") + agentproto.PathWebSocket
	a := ginEnv.Connect(t, cred)
	if !env.Hub.Online(id) {
		t.Fatal("not online through gin")
	}
	if err := a.Send(ctxT(t, time.Second), agentproto.TypeHeartbeat, "hb", nil); err != nil {
		t.Fatal(err)
	}
	a.Expect(t, agentproto.TypeHeartbeatAck, nil)
	_, resp, err := ginEnv.Dial(ctxT(t, 5*time.Second), id+".wrong")
	if err == nil || resp.StatusCode != http.StatusUnauthorized || hubtest.ErrorCode(resp) != "unauthorized" {
		t.Fatalf("bad credential through gin: %v %v", resp, err)
	}
}
