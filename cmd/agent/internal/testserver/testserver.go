// Package testserver is a small test double of the client manager's agent
// endpoints (POST /api/enroll and GET /ws), speaking package agentproto, for
// the tests of the agent command. It is not a server implementation: it
// keeps everything in memory and checks little.
package testserver

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/home-console/client-manager/internal/httpjson"
	"github.com/home-console/client-manager/pkg/agentproto"
)

// Server is the test double. Its methods are safe for concurrent use.
type Server struct {
	URL     string
	Token   string // the one enrollment token accepted
	Welcome agentproto.Welcome

	mu       sync.Mutex
	creds    map[string]string // credential -> agent id
	conns    map[string]*websocket.Conn
	enrolled int
	results  chan agentproto.CommandResult
}

// New starts a server closed when the test ends.
func New(t testing.TB) *Server {
	s := &Server{
		Token: "enroll-me",
		Welcome: agentproto.Welcome{HeartbeatIntervalMS: 15000, LivenessTimeoutMS: 45000,
			MaxMessageBytes: 1 << 20, MaxOutputBytes: 1 << 20, ServerVersion: "testserver"},
		creds:   make(map[string]string),
		conns:   make(map[string]*websocket.Conn),
		results: make(chan agentproto.CommandResult, 1024),
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+agentproto.PathEnroll, s.enroll)
	mux.HandleFunc("GET "+agentproto.PathWebSocket, s.serveWS)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	s.URL = srv.URL
	return s
}

func (s *Server) enroll(w http.ResponseWriter, r *http.Request) {
	var req agentproto.EnrollRequest
	if json.NewDecoder(r.Body).Decode(&req) != nil || req.Token != s.Token {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		w.Write([]byte(`{"error":{"code":"invalid_token","message":"enrollment token is invalid"}}`))
		return
	}
	s.mu.Lock()
	s.enrolled++
	id := fmt.Sprintf("ag%d", s.enrolled)
	cred := agentproto.FormatCredential(id, rand.Text())
	s.creds[cred] = id
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	json.NewEncoder(w).Encode(agentproto.EnrollResponse{AgentID: id, Credential: cred})
}

func (s *Server) serveWS(w http.ResponseWriter, r *http.Request) {
	cred, _ := httpjson.BearerToken(r.Header)
	s.mu.Lock()
	id, ok := s.creds[cred]
	s.mu.Unlock()
	if !ok {
		http.Error(w, `{"error":{"code":"unauthorized","message":"unknown credential"}}`, http.StatusUnauthorized)
		return
	}
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{agentproto.Subprotocol}})
	if err != nil {
		return
	}
	defer ws.CloseNow()
	ctx := r.Context()
	if env, err := read(ctx, ws); err != nil || env.Type != agentproto.TypeHello {
		ws.Close(websocket.StatusPolicyViolation, "hello expected")
		return
	}
	wel := s.Welcome
	wel.AgentID = id
	send(ws, agentproto.TypeWelcome, wel)
	s.mu.Lock()
	s.conns[id] = ws
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		if s.conns[id] == ws {
			delete(s.conns, id)
		}
		s.mu.Unlock()
	}()
	s.readLoop(ctx, ws)
}

func (s *Server) readLoop(ctx context.Context, ws *websocket.Conn) {
	for {
		env, err := read(ctx, ws)
		if err != nil {
			return
		}
		switch env.Type {
		case agentproto.TypeHeartbeat:
			send(ws, agentproto.TypeHeartbeatAck, nil)
		case agentproto.TypeCommandResult:
			var res agentproto.CommandResult
			json.Unmarshal(env.Data, &res)
			send(ws, agentproto.TypeResultAck, agentproto.CommandRef{CommandID: res.CommandID})
			s.results <- res
		}
	}
}

// Connected returns how many agents are connected now.
func (s *Server) Connected() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// Enrolled returns how many agents enrolled.
func (s *Server) Enrolled() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.enrolled
}

// WaitConnected waits until n agents are connected.
func (s *Server) WaitConnected(t testing.TB, n int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for s.Connected() != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d agents connected after %s, want %d", s.Connected(), within, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Send sends a message to a connected agent.
func (s *Server) Send(agentID, typ string, data any) error {
	s.mu.Lock()
	ws := s.conns[agentID]
	s.mu.Unlock()
	if ws == nil {
		return fmt.Errorf("agent %s not connected", agentID)
	}
	return send(ws, typ, data)
}

// Revoke forgets an agent's credential and closes its connection with
// agentproto.CloseRevoked.
func (s *Server) Revoke(agentID string) {
	s.mu.Lock()
	for c, id := range s.creds {
		if id == agentID {
			delete(s.creds, c)
		}
	}
	ws := s.conns[agentID]
	s.mu.Unlock()
	if ws != nil {
		ws.Close(agentproto.CloseRevoked, "credential revoked")
	}
}

// Results yields the command results received (each acknowledged).
func (s *Server) Results() <-chan agentproto.CommandResult { return s.results }

// read returns the next text message; binary frames (stream data) are
// skipped.
func read(ctx context.Context, ws *websocket.Conn) (agentproto.Envelope, error) {
	var env agentproto.Envelope
	typ, b, err := ws.Read(ctx)
	for err == nil && typ == websocket.MessageBinary {
		typ, b, err = ws.Read(ctx)
	}
	if err == nil {
		err = json.Unmarshal(b, &env)
	}
	return env, err
}

// SendData sends a stream's data frame (4-byte big-endian stream id, then
// payload) to a connected agent. The server keeps no stream state: the
// caller stays within the agent's window.
func (s *Server) SendData(agentID string, streamID uint32, payload []byte) error {
	s.mu.Lock()
	ws := s.conns[agentID]
	s.mu.Unlock()
	if ws == nil {
		return fmt.Errorf("agent %s not connected", agentID)
	}
	frame := binary.BigEndian.AppendUint32(make([]byte, 0, agentproto.StreamHeaderBytes+len(payload)), streamID)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return ws.Write(ctx, websocket.MessageBinary, append(frame, payload...))
}

func send(ws *websocket.Conn, typ string, data any) error {
	var raw json.RawMessage
	if data != nil {
		raw, _ = json.Marshal(data)
	}
	b, _ := json.Marshal(agentproto.Envelope{Type: typ, Data: raw})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return ws.Write(ctx, websocket.MessageText, b)
}
