package hub_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/home-console/client-manager/internal/events"
	"github.com/home-console/client-manager/internal/hub"
	"github.com/home-console/client-manager/internal/hub/hubtest"
	"github.com/home-console/client-manager/pkg/agentproto"
)

func TestProtocolViolationsClose(t *testing.T) {
	env := hubtest.Start(t, hub.Config{MaxMessageBytes: 4096, HelloTimeout: 300 * time.Millisecond, SweepInterval: 50 * time.Millisecond})
	hello := func(t *testing.T, a *hubtest.Agent) {
		if err := a.Send(ctxT(t, time.Second), agentproto.TypeHello, "", agentproto.Hello{}); err != nil {
			t.Fatal(err)
		}
		a.Expect(t, agentproto.TypeWelcome, nil)
	}
	cases := []struct {
		name  string
		hello bool
		act   func(context.Context, *hubtest.Agent) error
		code  websocket.StatusCode
	}{
		{"oversized frame", true, func(ctx context.Context, a *hubtest.Agent) error {
			return a.Send(ctx, agentproto.TypeHeartbeat, strings.Repeat("x", 8192), nil)
		}, agentproto.CloseTooBig},
		{"binary frame", true, func(ctx context.Context, a *hubtest.Agent) error {
			return a.Conn.Write(ctx, websocket.MessageBinary, []byte{1, 2, 3})
		}, agentproto.CloseUnsupported},
		{"not json", true, func(ctx context.Context, a *hubtest.Agent) error {
			return a.Conn.Write(ctx, websocket.MessageText, []byte("hello there"))
		}, agentproto.CloseInvalidData},
		{"envelope without type", true, func(ctx context.Context, a *hubtest.Agent) error {
			return a.Conn.Write(ctx, websocket.MessageText, []byte(`{"id":"1"}`))
		}, agentproto.CloseInvalidData},
		{"first message not hello", false, func(ctx context.Context, a *hubtest.Agent) error {
			return a.Send(ctx, agentproto.TypeHeartbeat, "", nil)
		}, agentproto.ClosePolicy},
		{"no hello", false, func(context.Context, *hubtest.Agent) error { return nil }, agentproto.ClosePolicy},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id, cred := env.NewAgent(t, tc.name)
			a, _, err := env.Dial(ctxT(t, 5*time.Second), cred)
			if err != nil {
				t.Fatal(err)
			}
			defer a.Conn.CloseNow()
			if tc.hello {
				hello(t, a)
			}
			if err := tc.act(ctxT(t, 5*time.Second), a); err != nil {
				t.Fatal(err)
			}
			if code, reason := a.CloseStatus(ctxT(t, 5*time.Second)); code != tc.code {
				t.Fatalf("closed with %d %q, want %d", code, reason, tc.code)
			}
			hubtest.Eventually(t, 5*time.Second, "offline", func() bool { return !env.Hub.Online(id) })
		})
	}
}

func TestUnknownTypeKeepsConnection(t *testing.T) {
	env := hubtest.Start(t, hub.Config{})
	id, cred := env.NewAgent(t, "a")
	a := env.Connect(t, cred)
	ctx := ctxT(t, 5*time.Second)
	if err := a.Send(ctx, "telemetry_v9", "x1", map[string]int{"cpu": 3}); err != nil {
		t.Fatal(err)
	}
	var e agentproto.Error
	a.Expect(t, agentproto.TypeError, &e)
	if e.Code != "unknown_type" || e.Ref != "x1" {
		t.Fatalf("error %+v", e)
	}
	if err := a.Send(ctx, agentproto.TypeCommandResult, "r1", "not an object"); err != nil {
		t.Fatal(err)
	}
	a.Expect(t, agentproto.TypeError, &e)
	if e.Code != "invalid_data" || e.Ref != "r1" {
		t.Fatalf("error %+v", e)
	}
	if err := a.Send(ctx, agentproto.TypeHeartbeat, "hb", nil); err != nil {
		t.Fatal(err)
	}
	a.Expect(t, agentproto.TypeHeartbeatAck, nil)
	if !env.Hub.Online(id) {
		t.Fatal("dropped after an unknown type")
	}
}

func TestMessageFloodCloses4005(t *testing.T) {
	env := hubtest.Start(t, hub.Config{MessageRate: 20, MessageBurst: 40})
	id, cred := env.NewAgent(t, "a")
	a := env.Connect(t, cred)
	ctx := ctxT(t, 10*time.Second)
	go func() {
		for range 500 {
			if a.Send(ctx, agentproto.TypeHeartbeat, "", nil) != nil {
				return
			}
		}
	}()
	if code, _ := a.CloseStatus(ctx); code != agentproto.CloseRateLimited {
		t.Fatalf("closed with %d, want %d", code, agentproto.CloseRateLimited)
	}
	if env.Hub.Online(id) {
		t.Fatal("still online")
	}
}

func TestSlowAgentDisconnectedOthersUnaffected(t *testing.T) {
	env := hubtest.Start(t, hub.Config{OutboundQueue: 16})
	sub := env.Bus.Subscribe(64)
	defer sub.Close()
	slowID, slowCred := env.NewAgent(t, "slow")
	fastID, fastCred := env.NewAgent(t, "fast")
	env.Connect(t, slowCred) // never reads again
	fast := env.Connect(t, fastCred)

	big, _ := json.Marshal(strings.Repeat("x", 256<<10))
	var full bool
	for i := 0; i < 2000 && !full; i++ {
		start := time.Now()
		err := env.Hub.Send(slowID, agentproto.Envelope{Type: "bulk", Data: big})
		if time.Since(start) > 500*time.Millisecond {
			t.Fatalf("Send blocked for %s", time.Since(start))
		}
		switch {
		case errors.Is(err, hub.ErrQueueFull):
			full = true
		case err != nil:
			t.Fatalf("send %d: %v", i, err)
		}
		if i%20 == 0 {
			// The fast agent keeps getting its messages promptly.
			if err := env.Hub.Send(fastID, agentproto.Envelope{Type: "ping", ID: "f"}); err != nil {
				t.Fatal(err)
			}
			fast.Expect(t, "ping", nil)
			if time.Since(start) > time.Second {
				t.Fatalf("fast agent delayed %s", time.Since(start))
			}
		}
	}
	if !full {
		t.Fatal("the slow agent's queue never filled")
	}
	if env.Hub.Online(slowID) {
		t.Fatal("slow agent still online")
	}
	if err := env.Hub.Send(slowID, agentproto.Envelope{Type: "bulk"}); !errors.Is(err, hub.ErrOffline) {
		t.Fatalf("send after disconnect: %v", err)
	}
	e := waitEvent(t, sub, func(e events.AgentDisconnected) bool { return e.AgentID == slowID })
	if e.Code != int(agentproto.CloseSlowConsumer) {
		t.Fatalf("disconnect event %+v", e)
	}
	if !env.Hub.Online(fastID) {
		t.Fatal("fast agent dropped")
	}
}

func TestMaxConnections(t *testing.T) {
	env := hubtest.Start(t, hub.Config{MaxConnections: 2})
	for i := range 2 {
		_, cred := env.NewAgent(t, "a"+string(rune('0'+i)))
		env.Connect(t, cred)
	}
	_, cred := env.NewAgent(t, "extra")
	_, resp, err := env.Dial(ctxT(t, 5*time.Second), cred)
	if err == nil || resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("want 503 with Retry-After, got %v %v", resp, err)
	}
	if code := hubtest.ErrorCode(resp); code != "too_many_connections" {
		t.Fatalf("code %q", code)
	}
}

func TestConnectRateLimit(t *testing.T) {
	env := hubtest.Start(t, hub.Config{ConnectRate: 0.5, ConnectBurst: 2})
	_, cred := env.NewAgent(t, "a")
	for range 2 {
		a, _, err := env.Dial(ctxT(t, 5*time.Second), cred)
		if err != nil {
			t.Fatal(err)
		}
		defer a.Conn.CloseNow()
	}
	_, resp, err := env.Dial(ctxT(t, 5*time.Second), cred)
	if err == nil || resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("want 429 with Retry-After, got %v %v", resp, err)
	}
	if code := hubtest.ErrorCode(resp); code != "rate_limited" {
		t.Fatalf("code %q", code)
	}
}
