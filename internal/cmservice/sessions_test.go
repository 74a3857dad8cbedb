package cmservice

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/home-console/client-manager/internal/fleet"
	"github.com/home-console/client-manager/internal/hub"
	"github.com/home-console/client-manager/internal/hub/hubtest"
	"github.com/home-console/client-manager/internal/sessions"
	"github.com/home-console/client-manager/pkg/agentproto"
	"github.com/home-console/client-manager/pkg/terminalproto"
)

// hubSessions is a sessions.Manager over a real hub, and one agent
// connected with streams, terminal and files.
func hubSessions(t *testing.T) (*sessions.Manager, *hubtest.StreamAgent, string) {
	t.Helper()
	env := hubtest.Start(t, hub.Config{})
	id, cred := env.NewAgent(t, "a")
	agent := env.ConnectStreams(t, cred, agentproto.FeatureTerminal, agentproto.FeatureFiles)
	m, err := sessions.New(hubStreams{env.Hub}, sessions.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = m.Shutdown(ctx)
	})
	deadline := time.Now().Add(5 * time.Second)
	for _, ok := env.Hub.Features(id); !ok; _, ok = env.Hub.Features(id) {
		if time.Now().After(deadline) {
			t.Fatal("agent not online")
		}
		time.Sleep(5 * time.Millisecond)
	}
	return m, agent, id
}

// TestTerminalOverTheHub: keystrokes, a resize and the exit travel over
// a real agent connection; the resize carries the stream's id.
func TestTerminalOverTheHub(t *testing.T) {
	m, agent, id := hubSessions(t)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := m.ServeTerminal(w, r, fleet.TerminalRequest{AgentID: id, Operator: "op", Cols: 80, Rows: 24, Term: "xterm"})
		if err != nil {
			http.Error(w, err.Error(), http.StatusConflict)
		}
	}))
	defer ts.Close()
	go func() {
		st := <-agent.Opens
		_ = st.Accept(agentproto.StreamOpened{PID: 1})
		buf := make([]byte, 4)
		_, _ = io.ReadFull(st, buf)
		ctl := <-st.Controls()
		_, _ = st.Write(append(buf, []byte(" "+resizeText(ctl, st.ID()))...))
		code := 5
		_ = st.CloseWrite(agentproto.StreamClose{ExitCode: &code})
	}()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(ts.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if _, _, err := c.Read(ctx); err != nil { // session
		t.Fatal(err)
	}
	_ = c.Write(ctx, websocket.MessageBinary, []byte("ls\r\n"))
	resize, _ := json.Marshal(terminalproto.Message{Type: terminalproto.TypeResize, Cols: 132, Rows: 43})
	_ = c.Write(ctx, websocket.MessageText, resize)
	var out bytes.Buffer
	var exit terminalproto.Message
	for {
		typ, data, err := c.Read(ctx)
		if err != nil {
			if websocket.CloseStatus(err) != websocket.StatusNormalClosure {
				t.Fatalf("close: %v", err)
			}
			break
		}
		if typ == websocket.MessageBinary {
			out.Write(data)
		} else {
			_ = json.Unmarshal(data, &exit)
		}
	}
	if out.String() != "ls\r\n resize 132x43 on its stream" || exit.ExitCode == nil || *exit.ExitCode != 5 {
		t.Fatalf("output %q, exit %+v", out.String(), exit)
	}
}

// resizeText describes a control message for the test's output.
func resizeText(ctl any, id uint32) string {
	r, ok := ctl.(agentproto.TerminalResize)
	if !ok {
		return "not a resize"
	}
	where := "on another stream"
	if r.StreamID == id {
		where = "on its stream"
	}
	return fmt.Sprintf("resize %dx%d %s", r.Cols, r.Rows, where)
}

// TestUploadOverTheHub: a 3 MiB upload (many windows) arrives whole, and
// an agent's refusal keeps its code.
func TestUploadOverTheHub(t *testing.T) {
	m, agent, id := hubSessions(t)
	content := bytes.Repeat([]byte("0123456789abcdef"), 3<<16)
	got := make(chan []byte, 1)
	go func() {
		st := <-agent.Opens
		_ = st.Accept(agentproto.StreamOpened{})
		data, _ := io.ReadAll(st)
		got <- data
		_ = st.CloseWrite(agentproto.StreamClose{Bytes: int64(len(data)), SHA256: "d"})
		st = <-agent.Opens
		have := int64(7)
		_ = st.AbortWith(agentproto.StreamClose{Code: agentproto.StreamErrorOffsetMismatch, Offset: &have})
	}()
	res, err := m.Upload(t.Context(), fleet.FileRequest{AgentID: id, Path: "/f", Size: int64(len(content))}, bytes.NewReader(content))
	if err != nil || res.Size != int64(len(content)) || res.SHA256 != "d" {
		t.Fatalf("upload: %+v %v", res, err)
	}
	if data := <-got; !bytes.Equal(data, content) {
		t.Fatalf("agent got %d bytes, want %d", len(data), len(content))
	}
	_, err = m.Upload(t.Context(), fleet.FileRequest{AgentID: id, Path: "/f", Size: 10, Offset: 3}, bytes.NewReader(make([]byte, 7)))
	var om *fleet.OffsetMismatchError
	if !errors.As(err, &om) || om.Offset != 7 {
		t.Fatalf("refused upload: %v", err)
	}
}

// TestSessionsThroughTheService: the routes are wired: a ticket, the
// terminal WebSocket with it, an upload, the session list and the
// recording, through the whole service and a real agent connection.
func TestSessionsThroughTheService(t *testing.T) {
	svc, base := startService(t, Config{})
	_, tok := call(t, "POST", base+"/api/enrollment-tokens", `{"name":"s","uses":1}`)
	_, enrolled := call(t, "POST", base+agentproto.PathEnroll, `{"token":"`+tok["token"].(string)+`","name":"s"}`)
	id, cred := enrolled["agent_id"].(string), enrolled["credential"].(string)
	ws := "ws" + strings.TrimPrefix(base, "http")
	agent := (&hubtest.Env{WSURL: ws + agentproto.PathWebSocket}).ConnectStreams(t, cred, agentproto.FeatureTerminal, agentproto.FeatureFiles)
	eventually(t, 5*time.Second, "agent online", func() bool { _, ok := svc.app.hub.Features(id); return ok })
	go func() {
		for st := range agent.Opens {
			_ = st.Accept(agentproto.StreamOpened{})
			data, _ := io.ReadAll(st)
			code := len(data)
			_ = st.CloseWrite(agentproto.StreamClose{ExitCode: &code, Bytes: int64(len(data)), SHA256: "x"})
		}
	}()

	code, ticket := call(t, "POST", base+"/api/clients/"+id+"/terminal/tickets", "")
	if code != http.StatusCreated {
		t.Fatalf("ticket = %d %v", code, ticket)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, ws+"/api/clients/"+id+"/terminal?ticket="+ticket["ticket"].(string), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	_, _, _ = c.Read(ctx) // session
	_ = c.Write(ctx, websocket.MessageBinary, []byte("abc"))
	_ = c.Close(websocket.StatusNormalClosure, "done") // the agent's ReadAll ends: the stream was aborted

	req, _ := http.NewRequest("PUT", base+"/api/clients/"+id+"/files?path=/srv/x", strings.NewReader("hello"))
	res, err := http.DefaultClient.Do(req)
	if err != nil || res.StatusCode != http.StatusCreated {
		t.Fatalf("upload: %v %v", err, res)
	}
	res.Body.Close()
	eventually(t, 5*time.Second, "the session ended", func() bool {
		_, list := call(t, "GET", base+"/api/sessions?agent_id="+id, "")
		s, _ := list["sessions"].([]any)
		return len(s) == 1 && s[0].(map[string]any)["state"] == "ended"
	})
	if code, _ := call(t, "GET", base+"/api/clients/"+id+"/files/stat?path=relative", ""); code != http.StatusBadRequest {
		t.Fatalf("stat of a relative path = %d", code)
	}
}
