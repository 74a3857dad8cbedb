package sessions_test

import (
	"bytes"
	"net/http"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/home-console/client-manager/internal/fleet"
	"github.com/home-console/client-manager/internal/sessions"
	"github.com/home-console/client-manager/internal/sessions/sessionstest"
	"github.com/home-console/client-manager/pkg/agentproto"
	"github.com/home-console/client-manager/pkg/terminalproto"
)

func TestWatcherSeesOutputAndExit(t *testing.T) {
	e := newEnv(t, sessions.Config{})
	agents := make(chan *sessionstest.AgentStream, 1)
	e.streams.Set("a1", shell(agents))
	c := dial(t, e.url+"/t/a1")
	id := readMsg(t, c).SessionID
	ag := <-agents
	w := dial(t, e.url+"/w/"+id)
	if m := readMsg(t, w); m.Mode != terminalproto.ModeWatch || m.SessionID != id {
		t.Fatalf("watcher's first message %+v", m)
	}
	// A watcher's keystrokes are ignored; the agent gets only the owner's.
	if err := w.Write(t.Context(), websocket.MessageBinary, []byte("rm -rf /")); err != nil {
		t.Fatal(err)
	}
	if err := c.Write(t.Context(), websocket.MessageBinary, []byte("x")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	if n, err := ag.Read(buf); err != nil || string(buf[:n]) != "x" {
		t.Fatalf("agent got %q, %v", buf[:n], err)
	}
	go func() {
		_, _ = ag.Write([]byte("out"))
		zero := 0
		ag.CloseWrite(agentproto.StreamClose{ExitCode: &zero})
	}()
	out, msgs, status := readUntilClose(t, w)
	if string(out) != "out" || status != websocket.StatusNormalClosure || len(msgs) != 1 || msgs[0].Type != terminalproto.TypeExit {
		t.Fatalf("watcher saw %q %+v %v", out, msgs, status)
	}
	readUntilClose(t, c)
	<-e.ended
	_, res, err := websocket.Dial(t.Context(), e.url+"/w/"+id, nil)
	if err == nil || res.StatusCode != http.StatusConflict || fleet.CodeOf(<-e.refused) != fleet.CodeSessionEnded {
		t.Fatalf("watching an ended session: %v %v", err, res)
	}
	_, _, err = websocket.Dial(t.Context(), e.url+"/w/ses_nope", nil)
	if err == nil || fleet.CodeOf(<-e.refused) != fleet.CodeNotFound {
		t.Fatalf("watching an unknown session: %v", err)
	}
}

func TestWatcherTextFrameIsPolicyViolation(t *testing.T) {
	e := newEnv(t, sessions.Config{})
	agents := make(chan *sessionstest.AgentStream, 1)
	e.streams.Set("a1", shell(agents))
	c := dial(t, e.url+"/t/a1")
	id := readMsg(t, c).SessionID
	<-agents
	w := dial(t, e.url+"/w/"+id)
	readMsg(t, w)
	if err := w.Write(t.Context(), websocket.MessageText, []byte(`{"type":"resize","cols":1,"rows":1}`)); err != nil {
		t.Fatal(err)
	}
	if _, _, status := readUntilClose(t, w); status != websocket.StatusPolicyViolation {
		t.Fatalf("close %v, want 1008", status)
	}
}

// TestSlowWatcher: a watcher that does not read is closed with 4012,
// and the owner still gets every byte, at the agent's pace.
func TestSlowWatcher(t *testing.T) {
	e := newEnv(t, sessions.Config{WatcherQueue: 4})
	agents := make(chan *sessionstest.AgentStream, 1)
	e.streams.Set("a1", shell(agents))
	c := dial(t, e.url+"/t/a1")
	id := readMsg(t, c).SessionID
	ag := <-agents
	w := dial(t, e.url+"/w/"+id)
	readMsg(t, w) // then it reads no more

	const frames, size = 400, 32 << 10
	chunk := bytes.Repeat([]byte("y"), size)
	go func() {
		for range frames {
			if _, err := ag.Write(chunk); err != nil {
				return
			}
		}
		zero := 0
		ag.CloseWrite(agentproto.StreamClose{ExitCode: &zero})
	}()
	start := time.Now()
	out, _, status := readUntilClose(t, c)
	if len(out) != frames*size || status != websocket.StatusNormalClosure {
		t.Fatalf("owner got %d bytes (want %d), close %v", len(out), frames*size, status)
	}
	t.Logf("owner got %d MiB in %v with a stalled watcher", len(out)>>20, time.Since(start))
	// The watcher now reads what reached it, then the close.
	_, _, wstatus := readUntilClose(t, w)
	if wstatus != websocket.StatusCode(terminalproto.CloseSlowWatcher) {
		t.Fatalf("watcher closed with %v, want 4012", wstatus)
	}
}

func TestShutdownEndsSessions(t *testing.T) {
	e := newEnv(t, sessions.Config{})
	agents := make(chan *sessionstest.AgentStream, 1)
	e.streams.Set("a1", shell(agents))
	c := dial(t, e.url+"/t/a1")
	id := readMsg(t, c).SessionID
	ag := <-agents
	w := dial(t, e.url+"/w/"+id)
	readMsg(t, w)
	shut := make(chan error, 1)
	go func() { shut <- e.m.Shutdown(t.Context()) }()
	for name, conn := range map[string]*websocket.Conn{"owner": c, "watcher": w} {
		if _, _, status := readUntilClose(t, conn); status != websocket.StatusGoingAway {
			t.Errorf("%s closed with %v, want 1001", name, status)
		}
	}
	if err := <-shut; err != nil {
		t.Fatal(err)
	}
	if c, ok := ag.ServerClose(); !ok || c.Code != agentproto.StreamErrorShutdown {
		t.Fatalf("agent got %+v %v, want code shutdown", c, ok)
	}
	_, _, err := websocket.Dial(t.Context(), e.url+"/t/a1", nil)
	if err == nil || fleet.CodeOf(<-e.refused) != fleet.CodeUnavailable {
		t.Fatalf("a terminal after shutdown: %v", err)
	}
}
