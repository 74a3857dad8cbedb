package sessions_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/home-console/client-manager/internal/access"
	"github.com/home-console/client-manager/internal/fleet"
	"github.com/home-console/client-manager/internal/sessions"
	"github.com/home-console/client-manager/internal/sessions/sessionstest"
	"github.com/home-console/client-manager/pkg/agentproto"
	"github.com/home-console/client-manager/pkg/terminalproto"
)

// env is a Manager over fake agents, served on a loopback port: /t/{agent}
// opens a terminal, /w/{session} watches one.
type env struct {
	m       *sessions.Manager
	streams *sessionstest.Streams
	url     string
	dir     string
	ended   chan fleet.TerminalSession
	refused chan error
}

func newEnv(t *testing.T, cfg sessions.Config) *env {
	t.Helper()
	e := &env{streams: &sessionstest.Streams{}, dir: t.TempDir(), ended: make(chan fleet.TerminalSession, 8), refused: make(chan error, 8)}
	cfg.Dir = e.dir
	m, err := sessions.New(e.streams, cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.m = m
	mux := http.NewServeMux()
	mux.HandleFunc("/t/{agent}", func(w http.ResponseWriter, r *http.Request) {
		rec, err := m.ServeTerminal(w, r, fleet.TerminalRequest{AgentID: r.PathValue("agent"), Operator: "op", Role: "admin", Cols: 80, Rows: 24, Term: "xterm"})
		if err != nil {
			e.refused <- err
			http.Error(w, string(fleet.CodeOf(err)), http.StatusConflict)
			return
		}
		e.ended <- rec
	})
	mux.HandleFunc("/w/{id}", func(w http.ResponseWriter, r *http.Request) {
		if err := m.ServeWatch(w, r, access.Principal{Name: "watcher"}, r.PathValue("id")); err != nil {
			e.refused <- err
			http.Error(w, string(fleet.CodeOf(err)), http.StatusConflict)
		}
	})
	ts := httptest.NewServer(mux)
	t.Cleanup(ts.Close)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := m.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	e.url = "ws" + strings.TrimPrefix(ts.URL, "http")
	return e
}

// shell is a fake terminal agent: it accepts, then hands the stream to
// the test.
func shell(streams chan *sessionstest.AgentStream) *sessionstest.Agent {
	return &sessionstest.Agent{Features: []string{agentproto.FeatureTerminal}, Handle: func(s *sessionstest.AgentStream) {
		s.Accept(agentproto.StreamOpened{PID: 42})
		streams <- s
	}}
}

func dial(t *testing.T, url string) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	c, res, err := websocket.Dial(ctx, url, &websocket.DialOptions{Subprotocols: []string{terminalproto.Subprotocol}})
	if err != nil {
		t.Fatalf("dial %s: %v (%v)", url, err, res)
	}
	c.SetReadLimit(1 << 20)
	t.Cleanup(func() { _ = c.CloseNow() })
	return c
}

// readMsg reads one text message.
func readMsg(t *testing.T, c *websocket.Conn) terminalproto.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	typ, data, err := c.Read(ctx)
	if err != nil || typ != websocket.MessageText {
		t.Fatalf("read: %v %v %q", typ, err, data)
	}
	var m terminalproto.Message
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// readUntilClose reads until the connection closes and returns the
// binary bytes, the text messages and the close status.
func readUntilClose(t *testing.T, c *websocket.Conn) ([]byte, []terminalproto.Message, websocket.StatusCode) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	var out bytes.Buffer
	var msgs []terminalproto.Message
	for {
		typ, data, err := c.Read(ctx)
		if err != nil {
			return out.Bytes(), msgs, websocket.CloseStatus(err)
		}
		if typ == websocket.MessageBinary {
			out.Write(data)
			continue
		}
		var m terminalproto.Message
		_ = json.Unmarshal(data, &m)
		msgs = append(msgs, m)
	}
}

func TestTerminalSession(t *testing.T) {
	e := newEnv(t, sessions.Config{})
	agents := make(chan *sessionstest.AgentStream, 1)
	e.streams.Set("a1", shell(agents))
	c := dial(t, e.url+"/t/a1")
	hello := readMsg(t, c)
	if hello.Type != terminalproto.TypeSession || hello.Mode != terminalproto.ModeControl || hello.AgentID != "a1" || hello.SessionID == "" {
		t.Fatalf("first message %+v", hello)
	}
	ag := <-agents
	if o := ag.Open; o.Kind != agentproto.StreamTerminal || o.Terminal.Cols != 80 || o.Terminal.Term != "xterm" {
		t.Fatalf("stream_open %+v", o)
	}
	ctx := t.Context()
	if err := c.Write(ctx, websocket.MessageBinary, []byte("ls\r")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 3)
	if _, err := io.ReadFull(ag, buf); err != nil || string(buf) != "ls\r" {
		t.Fatalf("agent got %q, %v", buf, err)
	}
	resize, _ := json.Marshal(terminalproto.Message{Type: terminalproto.TypeResize, Cols: 120, Rows: 40})
	if err := c.Write(ctx, websocket.MessageText, resize); err != nil {
		t.Fatal(err)
	}
	if got := <-ag.Controls; got != (agentproto.TerminalResize{Cols: 120, Rows: 40}) {
		t.Fatalf("control %#v", got)
	}
	if _, err := ag.Write([]byte("file1 file2\r\n")); err != nil {
		t.Fatal(err)
	}
	code := 3
	ag.CloseWrite(agentproto.StreamClose{ExitCode: &code})
	out, msgs, status := readUntilClose(t, c)
	if string(out) != "file1 file2\r\n" || status != websocket.StatusNormalClosure {
		t.Fatalf("output %q, close %v", out, status)
	}
	if len(msgs) != 1 || msgs[0].Type != terminalproto.TypeExit || msgs[0].ExitCode == nil || *msgs[0].ExitCode != 3 {
		t.Fatalf("last messages %+v", msgs)
	}
	rec := <-e.ended
	if rec.State != fleet.SessionEnded || rec.ExitCode == nil || *rec.ExitCode != 3 || rec.BytesIn != 3 || rec.BytesOut != 13 || rec.RecordingBytes == 0 {
		t.Fatalf("record %+v", rec)
	}
	cast, err := os.ReadFile(filepath.Join(e.dir, rec.ID+".cast"))
	if err != nil || !strings.Contains(string(cast), `"o","file1 file2\r\n"`) || strings.Contains(string(cast), `"i"`) {
		t.Fatalf("recording %q, %v", cast, err)
	}
	if got, ok := e.m.GetSession(rec.ID); !ok || got.State != fleet.SessionEnded {
		t.Fatalf("GetSession %+v %v", got, ok)
	}
}

func TestTerminalEnds(t *testing.T) {
	tests := []struct {
		name   string
		end    func(*sessionstest.AgentStream)
		status websocket.StatusCode
		reason string
	}{
		{"agent disconnected", func(s *sessionstest.AgentStream) {
			s.Abort(agentproto.StreamClose{Code: agentproto.StreamErrorDisconnected})
		}, websocket.StatusCode(terminalproto.CloseAgentGone), "agent disconnected"},
		{"idle", func(s *sessionstest.AgentStream) {
			s.Abort(agentproto.StreamClose{Code: "terminal_idle_timeout"})
		}, websocket.StatusCode(terminalproto.CloseIdle), "idle timeout"},
		{"shutdown", func(s *sessionstest.AgentStream) {
			s.Abort(agentproto.StreamClose{Code: agentproto.StreamErrorShutdown})
		}, websocket.StatusGoingAway, "shutdown"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, sessions.Config{})
			agents := make(chan *sessionstest.AgentStream, 1)
			e.streams.Set("a1", shell(agents))
			c := dial(t, e.url+"/t/a1")
			readMsg(t, c)
			tt.end(<-agents)
			_, msgs, status := readUntilClose(t, c)
			if status != tt.status || len(msgs) != 1 || msgs[0].Reason != tt.reason {
				t.Fatalf("close %v, messages %+v; want %v %q", status, msgs, tt.status, tt.reason)
			}
			if rec := <-e.ended; rec.EndReason != tt.reason {
				t.Fatalf("record %+v", rec)
			}
		})
	}
}

func TestTerminalOperatorLeavesAbortsTheStream(t *testing.T) {
	e := newEnv(t, sessions.Config{})
	agents := make(chan *sessionstest.AgentStream, 1)
	e.streams.Set("a1", shell(agents))
	c := dial(t, e.url+"/t/a1")
	readMsg(t, c)
	ag := <-agents
	_ = c.Close(websocket.StatusNormalClosure, "bye")
	_, err := io.ReadAll(ag)
	var ce *sessionstest.CloseError
	if !errors.As(err, &ce) || ce.Close.Code != agentproto.StreamErrorCancelled {
		t.Fatalf("agent's read after the operator left: %v", err)
	}
	if rec := <-e.ended; rec.State != fleet.SessionEnded {
		t.Fatalf("record %+v", rec)
	}
}

func TestTerminalBadOperatorMessages(t *testing.T) {
	tests := []struct {
		name   string
		msg    string
		status terminalproto.CloseCode
	}{
		{"not json", "{", terminalproto.CloseInvalidData},
		{"unknown field", `{"type":"resize","cols":1,"rows":1,"x":1}`, terminalproto.CloseInvalidData},
		{"session from operator", `{"type":"session"}`, terminalproto.ClosePolicy},
		{"resize too big", `{"type":"resize","cols":5000,"rows":10}`, terminalproto.ClosePolicy},
		{"unknown signal", `{"type":"signal","signal":"SIGSEGV"}`, terminalproto.ClosePolicy},
		{"resize flood", strings.Repeat(`{"type":"resize","cols":80,"rows":24}`+"\n", sessions.ControlBurst+5), terminalproto.ClosePolicy},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, sessions.Config{})
			agents := make(chan *sessionstest.AgentStream, 1)
			e.streams.Set("a1", shell(agents))
			c := dial(t, e.url+"/t/a1")
			readMsg(t, c)
			for _, msg := range strings.Split(strings.TrimSuffix(tt.msg, "\n"), "\n") {
				_ = c.Write(t.Context(), websocket.MessageText, []byte(msg))
			}
			if _, _, status := readUntilClose(t, c); status != websocket.StatusCode(tt.status) {
				t.Fatalf("close %v, want %v", status, tt.status)
			}
			<-e.ended
		})
	}
}

func TestTerminalFrameTooBig(t *testing.T) {
	e := newEnv(t, sessions.Config{})
	agents := make(chan *sessionstest.AgentStream, 1)
	e.streams.Set("a1", shell(agents))
	c := dial(t, e.url+"/t/a1")
	readMsg(t, c)
	_ = c.Write(t.Context(), websocket.MessageBinary, make([]byte, sessions.MaxFrameBytes+1))
	if _, _, status := readUntilClose(t, c); status != websocket.StatusMessageTooBig {
		t.Fatalf("close %v, want 1009", status)
	}
}

func TestTerminalRefused(t *testing.T) {
	tests := []struct {
		name  string
		agent *sessionstest.Agent
		code  fleet.ErrorCode
	}{
		{"offline", &sessionstest.Agent{Offline: true, Features: []string{agentproto.FeatureTerminal}}, fleet.CodeAgentOffline},
		{"no terminal feature", &sessionstest.Agent{}, fleet.CodeTerminalNotAllowed},
		{"agent says disabled", refusing(agentproto.FeatureTerminal, "terminal_disabled"), fleet.CodeTerminalNotAllowed},
		{"agent's limit", refusing(agentproto.FeatureTerminal, "terminal_limit"), fleet.CodeTerminalLimit},
		{"unknown agent code", refusing(agentproto.FeatureTerminal, "terminal_start_failed"), fleet.CodeAgentError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, sessions.Config{})
			e.streams.Set("a1", tt.agent)
			_, res, err := websocket.Dial(t.Context(), e.url+"/t/a1", nil)
			if err == nil || res == nil || res.StatusCode != http.StatusConflict {
				t.Fatalf("dial: %v %v", err, res)
			}
			if got := fleet.CodeOf(<-e.refused); got != tt.code {
				t.Fatalf("code %s, want %s", got, tt.code)
			}
		})
	}
}

// refusing is an agent with feature that refuses every stream with code.
func refusing(feature, code string) *sessionstest.Agent {
	return &sessionstest.Agent{Features: []string{feature}, Handle: func(s *sessionstest.AgentStream) {
		s.Refuse(agentproto.StreamClose{Code: code, Message: "no"})
	}}
}

func TestTerminalSubprotocol(t *testing.T) {
	e := newEnv(t, sessions.Config{})
	e.streams.Set("a1", shell(make(chan *sessionstest.AgentStream, 1)))
	_, res, err := websocket.Dial(t.Context(), e.url+"/t/a1", &websocket.DialOptions{Subprotocols: []string{"other"}})
	if err == nil || res.StatusCode != http.StatusConflict || fleet.CodeOf(<-e.refused) != fleet.CodeInvalidSubprotocol {
		t.Fatalf("dial with another subprotocol: %v %v", err, res)
	}
}

func TestRecordInput(t *testing.T) {
	e := newEnv(t, sessions.Config{RecordInput: true})
	agents := make(chan *sessionstest.AgentStream, 1)
	e.streams.Set("a1", shell(agents))
	c := dial(t, e.url+"/t/a1")
	readMsg(t, c)
	ag := <-agents
	if err := c.Write(t.Context(), websocket.MessageBinary, []byte("secret\r")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 7)
	if _, err := io.ReadFull(ag, buf); err != nil {
		t.Fatal(err)
	}
	ag.CloseWrite(agentproto.StreamClose{})
	readUntilClose(t, c)
	rec := <-e.ended
	cast, err := os.ReadFile(filepath.Join(e.dir, rec.ID+".cast"))
	if err != nil || !strings.Contains(string(cast), `"i","secret\r"`) {
		t.Fatalf("recording with input %q, %v", cast, err)
	}
}
