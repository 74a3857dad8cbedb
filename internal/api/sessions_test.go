package api_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/home-console/client-manager/internal/access"
	"github.com/home-console/client-manager/internal/api"
	"github.com/home-console/client-manager/internal/fleet"
	"github.com/home-console/client-manager/internal/sessions"
	"github.com/home-console/client-manager/internal/sessions/sessionstest"
	"github.com/home-console/client-manager/pkg/agentproto"
	"github.com/home-console/client-manager/pkg/terminalproto"
)

// sessionFixture is the API with terminals and files served by a
// sessions.Manager over fake agents; agents "term", "files", "plain"
// (no features) and "gone" (offline) exist in the store.
type sessionFixture struct {
	*fixture
	streams *sessionstest.Streams
	m       *sessions.Manager
	ids     map[string]string
	admin   string // an admin token
	op      string // an operator token
}

func newSessionFixture(t *testing.T, cfg sessions.Config) *sessionFixture {
	t.Helper()
	sf := &sessionFixture{streams: &sessionstest.Streams{}, ids: map[string]string{}}
	cfg.Dir = t.TempDir()
	m, err := sessions.New(sf.streams, cfg)
	if err != nil {
		t.Fatal(err)
	}
	sf.m = m
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = m.Shutdown(ctx)
	})
	sf.fixture = newFixtureWith(t, nil, func(s *api.Server) {
		s.Terminals, s.Files, s.TerminalRole, s.FilesRole = m, m, access.RoleAdmin, access.RoleAdmin
	})
	for i, name := range []string{"term", "files", "plain", "gone"} {
		sf.ids[name] = sf.addAgents(t, 1, map[string]string{"fleet": string(rune('a' + i))})[0]
	}
	sf.streams.Set(sf.ids["plain"], &sessionstest.Agent{})
	sf.streams.Set(sf.ids["gone"], &sessionstest.Agent{Offline: true, Features: []string{agentproto.FeatureTerminal, agentproto.FeatureFiles}})
	var admin, op struct{ Token string }
	if status, code := sf.call(t, "POST", "/api/tokens", `{"name":"adm","role":"admin"}`, &admin); status != http.StatusCreated {
		t.Fatalf("admin token: %d %s", status, code)
	}
	if status, code := sf.call(t, "POST", "/api/tokens", `{"name":"op","role":"operator"}`, &op, bearer(admin.Token)...); status != http.StatusCreated {
		t.Fatalf("operator token: %d %s", status, code)
	}
	sf.admin, sf.op = admin.Token, op.Token
	return sf
}

func bearer(token string) []string { return []string{"Authorization", "Bearer " + token} }

// ticket issues a terminal ticket for agent as the admin.
func (sf *sessionFixture) ticket(t *testing.T, agent string) string {
	t.Helper()
	var tk struct {
		Ticket    string    `json:"ticket"`
		ExpiresAt time.Time `json:"expires_at"`
	}
	if status, code := sf.call(t, "POST", "/api/clients/"+agent+"/terminal/tickets", "", &tk, bearer(sf.admin)...); status != http.StatusCreated || tk.Ticket == "" || tk.ExpiresAt.IsZero() {
		t.Fatalf("ticket: %d %s %+v", status, code, tk)
	}
	return tk.Ticket
}

// shellAgent is a fake terminal agent that echoes and exits on "exit".
func shellAgent() *sessionstest.Agent {
	return &sessionstest.Agent{Features: []string{agentproto.FeatureTerminal}, Handle: func(s *sessionstest.AgentStream) {
		s.Accept(agentproto.StreamOpened{PID: 7})
		buf := make([]byte, 64)
		for {
			n, err := s.Read(buf)
			if err != nil {
				return
			}
			if strings.TrimSpace(string(buf[:n])) == "exit" {
				code := 0
				s.CloseWrite(agentproto.StreamClose{ExitCode: &code})
				return
			}
			_, _ = s.Write(buf[:n])
		}
	}}
}

func (sf *sessionFixture) wsURL(path string) string {
	return "ws" + strings.TrimPrefix(sf.base, "http") + path
}

func TestTerminalWithTicket(t *testing.T) {
	sf := newSessionFixture(t, sessions.Config{})
	id := sf.ids["term"]
	sf.streams.Set(id, shellAgent())
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	tk := sf.ticket(t, id)
	c, _, err := websocket.Dial(ctx, sf.wsURL("/api/clients/"+id+"/terminal?cols=100&rows=30&ticket="+tk), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	_, data, err := c.Read(ctx)
	var hello terminalproto.Message
	if err != nil || json.Unmarshal(data, &hello) != nil || hello.Type != terminalproto.TypeSession || hello.Cols != 100 {
		t.Fatalf("first message %s %v", data, err)
	}
	if err := c.Write(ctx, websocket.MessageBinary, []byte("exit\n")); err != nil {
		t.Fatal(err)
	}
	for {
		if _, _, err := c.Read(ctx); err != nil {
			if websocket.CloseStatus(err) != websocket.StatusNormalClosure {
				t.Fatalf("close: %v", err)
			}
			break
		}
	}
	var rec fleet.TerminalSession
	deadline := time.Now().Add(5 * time.Second)
	for rec.State != fleet.SessionEnded && time.Now().Before(deadline) {
		sf.call(t, "GET", "/api/sessions/"+hello.SessionID, "", &rec, bearer(sf.admin)...)
	}
	if rec.Operator != "adm" || rec.AgentID != id || rec.ExitCode == nil || *rec.ExitCode != 0 {
		t.Fatalf("session %+v", rec)
	}
	var list struct{ Sessions []fleet.TerminalSession }
	if status, _ := sf.call(t, "GET", "/api/sessions?agent_id="+id+"&limit=5", "", &list, bearer(sf.admin)...); status != 200 || len(list.Sessions) != 1 {
		t.Fatalf("list: %d %+v", status, list)
	}
	res := sf.get(t, "/api/sessions/"+hello.SessionID+"/recording", bearer(sf.admin)...)
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "application/x-asciicast" || !strings.HasPrefix(string(body), `{"version":2,`) {
		t.Fatalf("recording: %d %s %.100s", res.StatusCode, res.Header.Get("Content-Type"), body)
	}
	sf.checkAudit(t, "GET /api/clients/:id/terminal", "session "+hello.SessionID+" exit 0")
	var audit struct{ Items []fleet.AuditEntry }
	sf.call(t, "GET", "/api/audit?limit=1000", "", &audit, bearer(sf.admin)...)
	for _, e := range audit.Items {
		if raw, _ := json.Marshal(e); strings.Contains(string(raw), tk) || strings.Contains(string(raw), "exit\\n") {
			t.Fatalf("audit entry holds the ticket or a keystroke: %s", raw)
		}
	}
}

// get sends a GET with headers and returns the response (body closed at
// the test's end).
func (sf *sessionFixture) get(t *testing.T, path string, headers ...string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest("GET", sf.base+path, nil)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { res.Body.Close() })
	return res
}

// checkAudit fails unless an audit entry of action has a detail
// containing detail, and no entry holds a ticket or token.
func (sf *sessionFixture) checkAudit(t *testing.T, action, detail string) {
	t.Helper()
	var audit struct{ Items []fleet.AuditEntry }
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		sf.call(t, "GET", "/api/audit?limit=1000&action="+strings.ReplaceAll(action, " ", "%20"), "", &audit, bearer(sf.admin)...)
		for _, e := range audit.Items {
			if strings.Contains(e.Detail, detail) && e.Result != fleet.AuditPending {
				return
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no %s entry with detail %q: %+v", action, detail, audit.Items)
}

func TestTerminalBadInput(t *testing.T) {
	sf := newSessionFixture(t, sessions.Config{TicketTTL: 50 * time.Millisecond})
	term, plain, gone := sf.ids["term"], sf.ids["plain"], sf.ids["gone"]
	sf.streams.Set(term, shellAgent())
	disabled, limited := sf.addAgents(t, 2, map[string]string{"fleet": "x"}), ""
	limited = disabled[1]
	sf.streams.Set(disabled[0], refusingAgent(agentproto.FeatureTerminal, "terminal_disabled"))
	sf.streams.Set(limited, refusingAgent(agentproto.FeatureTerminal, "terminal_limit"))

	used := sf.ticket(t, term)
	sf.get(t, "/api/clients/"+plain+"/terminal?ticket="+used) // any use spends it
	expired := sf.ticket(t, term)
	time.Sleep(100 * time.Millisecond)
	tests := []struct {
		name, method, path string
		headers            []string
		status             int
		code               string
	}{
		{"no token", "GET", "/api/clients/" + term + "/terminal", nil, 401, "unauthorized"},
		{"ticket reused", "GET", "/api/clients/" + term + "/terminal?ticket=" + used, nil, 401, "ticket_invalid"},
		{"ticket expired", "GET", "/api/clients/" + term + "/terminal?ticket=" + expired, nil, 401, "ticket_invalid"},
		{"ticket for another agent", "GET", "/api/clients/" + plain + "/terminal?ticket=" + sf.ticket(t, term), nil, 401, "ticket_invalid"},
		{"ticket unknown", "GET", "/api/clients/" + term + "/terminal?ticket=nope", nil, 401, "ticket_invalid"},
		{"operator role", "GET", "/api/clients/" + term + "/terminal", bearer(sf.op), 403, "forbidden"},
		{"operator ticket", "POST", "/api/clients/" + term + "/terminal/tickets", bearer(sf.op), 403, "forbidden"},
		{"unknown agent", "GET", "/api/clients/agt_nope/terminal", bearer(sf.admin), 404, "not_found"},
		{"ticket for unknown agent", "POST", "/api/clients/agt_nope/terminal/tickets", bearer(sf.admin), 404, "not_found"},
		{"offline", "GET", "/api/clients/" + gone + "/terminal", bearer(sf.admin), 409, "client_offline"},
		{"no terminal feature", "GET", "/api/clients/" + plain + "/terminal", bearer(sf.admin), 409, "terminal_not_allowed"},
		{"agent disabled", "GET", "/api/clients/" + disabled[0] + "/terminal", bearer(sf.admin), 409, "terminal_not_allowed"},
		{"agent's limit", "GET", "/api/clients/" + limited + "/terminal", bearer(sf.admin), 429, "terminal_limit"},
		{"cols 0", "GET", "/api/clients/" + term + "/terminal?cols=0", bearer(sf.admin), 400, "invalid_query"},
		{"rows text", "GET", "/api/clients/" + term + "/terminal?rows=ten", bearer(sf.admin), 400, "invalid_query"},
		{"bad term", "GET", "/api/clients/" + term + "/terminal?term=x%3Brm", bearer(sf.admin), 400, "invalid_query"},
		{"unknown param", "GET", "/api/clients/" + term + "/terminal?shell=bash", bearer(sf.admin), 400, "invalid_query"},
		{"other subprotocol", "GET", "/api/clients/" + term + "/terminal", append(bearer(sf.admin), "Sec-WebSocket-Protocol", "x"), 400, "invalid_subprotocol"},
		{"watch unknown session", "GET", "/api/sessions/ses_nope/watch", bearer(sf.admin), 404, "not_found"},
		{"watch operator", "GET", "/api/sessions/ses_nope/watch", bearer(sf.op), 403, "forbidden"},
		{"session unknown", "GET", "/api/sessions/ses_nope", bearer(sf.admin), 404, "not_found"},
		{"recording unknown", "GET", "/api/sessions/ses_nope/recording", bearer(sf.admin), 404, "not_found"},
		{"sessions operator", "GET", "/api/sessions", bearer(sf.op), 403, "forbidden"},
		{"sessions bad limit", "GET", "/api/sessions?limit=0", bearer(sf.admin), 400, "invalid_query"},
		{"sessions unknown param", "GET", "/api/sessions?agent=x", bearer(sf.admin), 400, "invalid_query"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, code := sf.call(t, tt.method, tt.path, "", nil, tt.headers...)
			if status != tt.status || code != tt.code {
				t.Fatalf("%s %s = %d %s, want %d %s", tt.method, tt.path, status, code, tt.status, tt.code)
			}
		})
	}
}

// refusingAgent refuses every stream with code.
func refusingAgent(feature, code string) *sessionstest.Agent {
	return &sessionstest.Agent{Features: []string{feature}, Handle: func(s *sessionstest.AgentStream) {
		s.Refuse(agentproto.StreamClose{Code: code, Message: "refused"})
	}}
}

func TestWatchEndedSession(t *testing.T) {
	sf := newSessionFixture(t, sessions.Config{})
	id := sf.ids["term"]
	sf.streams.Set(id, shellAgent())
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, sf.wsURL("/api/clients/"+id+"/terminal"), &websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + sf.admin}}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	_, data, _ := c.Read(ctx)
	var hello terminalproto.Message
	_ = json.Unmarshal(data, &hello)
	w, _, err := websocket.Dial(ctx, sf.wsURL("/api/sessions/"+hello.SessionID+"/watch?ticket="+sf.ticket(t, id)), nil)
	if err != nil {
		t.Fatalf("watch with a ticket: %v", err)
	}
	defer w.CloseNow()
	_ = c.Write(ctx, websocket.MessageBinary, []byte("exit\n"))
	for _, conn := range []*websocket.Conn{c, w} {
		for {
			if _, _, err := conn.Read(ctx); err != nil {
				break
			}
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		status, code := sf.call(t, "GET", "/api/sessions/"+hello.SessionID+"/watch", "", nil, bearer(sf.admin)...)
		if status == 409 && code == "session_ended" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("watch after the end = %d %s, want 409 session_ended", status, code)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if status, code := sf.call(t, "GET", "/api/sessions/"+hello.SessionID+"/watch?ticket="+sf.ticket(t, sf.ids["plain"]), "", nil); status != 401 || code != "ticket_invalid" {
		t.Fatalf("watch with another agent's ticket = %d %s", status, code)
	}
}
