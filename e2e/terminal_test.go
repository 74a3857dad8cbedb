package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/home-console/client-manager/pkg/terminalproto"
)

// sessionFixture is a standalone client manager and one bin/agent.
type sessionFixture struct {
	base, dataDir, share, id string
	port                     int
	cmEnv                    []string
	cm                       *standalone
	agent                    *exec.Cmd
	agentLogs                *syncBuffer
	agentArgs                []string
}

// startSessionFixture starts a client manager and an agent with
// agentFlags (besides those that join it), and waits for it online.
func startSessionFixture(t *testing.T, cmEnv []string, agentFlags ...string) *sessionFixture {
	t.Helper()
	port, dataDir := freePort(t), t.TempDir()
	cm, _ := startStandalone(t, port, dataDir, cmEnv...)
	f := &sessionFixture{base: "http://127.0.0.1:" + itoa(port), dataDir: dataDir, share: t.TempDir(),
		port: port, cmEnv: cmEnv, cm: cm}
	f.agentArgs = append([]string{"--server", f.base, "--enroll-token", "@" + filepath.Join(dataDir, "bootstrap-token"),
		"--credential-file", filepath.Join(t.TempDir(), "credential.json"), "--allow", "uname"}, agentFlags...)
	f.agent, f.agentLogs = startAgentBinary(t, f.agentArgs...)
	f.id = waitOnline(t, f.base, 15*time.Second)
	return f
}

// restartAgent kills the agent with SIGKILL and starts it again.
func (f *sessionFixture) restartAgent(t *testing.T) {
	t.Helper()
	_ = syscall.Kill(-f.agent.Process.Pid, syscall.SIGKILL)
	_ = f.agent.Wait()
	f.agent, f.agentLogs = startAgentBinary(t, f.agentArgs...)
}

// killServer kills the client manager with SIGKILL and starts it again
// on the same port and data directory.
func (f *sessionFixture) killServer(t *testing.T) {
	t.Helper()
	_ = f.cm.cmd.Process.Kill()
	<-f.cm.done
	f.cm, _ = startStandalone(t, f.port, f.dataDir, f.cmEnv...)
}

// term is an operator's terminal WebSocket in a test.
type term struct {
	t       *testing.T
	ws      *websocket.Conn
	session terminalproto.Message
	out     bytes.Buffer // output received so far
	exit    *terminalproto.Message
	closed  error
}

// openTerminal dials the terminal endpoint of f's agent; path may add a
// query. It fails the test unless the upgrade succeeds and the first
// message is the session message.
func openTerminal(t *testing.T, f *sessionFixture, query string) *term {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	url := "ws" + strings.TrimPrefix(f.base, "http") + "/api/clients/" + f.id + "/terminal" + query
	ws, res, err := websocket.Dial(ctx, url, &websocket.DialOptions{Subprotocols: []string{terminalproto.Subprotocol}})
	if err != nil {
		t.Fatalf("dial terminal: %v (%s)", err, responseText(res))
	}
	ws.SetReadLimit(1 << 20)
	tm := &term{t: t, ws: ws}
	t.Cleanup(func() { ws.CloseNow() })
	typ, b, err := ws.Read(ctx)
	if err != nil || typ != websocket.MessageText || json.Unmarshal(b, &tm.session) != nil ||
		tm.session.Type != terminalproto.TypeSession || tm.session.SessionID == "" {
		t.Fatalf("first terminal message = %d %q %v", typ, b, err)
	}
	return tm
}

// responseText is a refused upgrade's status and body, for messages.
func responseText(res *http.Response) string {
	if res == nil {
		return "no response"
	}
	var b bytes.Buffer
	_, _ = b.ReadFrom(res.Body)
	return res.Status + " " + b.String()
}

// send writes keystrokes.
func (tm *term) send(s string) {
	tm.t.Helper()
	if err := tm.ws.Write(context.Background(), websocket.MessageBinary, []byte(s)); err != nil {
		tm.t.Fatalf("send %q: %v", s, err)
	}
}

// control writes a control message.
func (tm *term) control(m terminalproto.Message) {
	tm.t.Helper()
	b, _ := json.Marshal(m)
	if err := tm.ws.Write(context.Background(), websocket.MessageText, b); err != nil {
		tm.t.Fatalf("control %+v: %v", m, err)
	}
}

// expect reads output until re matches it, and returns the submatches.
func (tm *term) expect(re *regexp.Regexp, within time.Duration) []string {
	tm.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	for {
		if m := re.FindStringSubmatch(tm.out.String()); m != nil {
			tm.out.Reset()
			return m
		}
		if tm.closed != nil {
			tm.t.Fatalf("terminal closed (%v) before %s; output %q", tm.closed, re, tm.out.String())
		}
		if err := tm.readOne(ctx); err != nil && tm.closed == nil {
			tm.t.Fatalf("waiting for %s: %v; output %q", re, err, tm.out.String())
		}
	}
}

// readOne reads one frame into out, exit or closed.
func (tm *term) readOne(ctx context.Context) error {
	typ, b, err := tm.ws.Read(ctx)
	switch {
	case err != nil && websocket.CloseStatus(err) != -1:
		tm.closed = err
		return nil
	case err != nil:
		return err
	case typ == websocket.MessageBinary:
		tm.out.Write(b)
	default:
		var m terminalproto.Message
		if json.Unmarshal(b, &m) == nil && m.Type == terminalproto.TypeExit {
			tm.exit = &m
		}
	}
	return nil
}

// waitClosed reads until the server closes and returns the close status.
func (tm *term) waitClosed(within time.Duration) websocket.StatusCode {
	tm.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	for tm.closed == nil {
		if err := tm.readOne(ctx); err != nil {
			tm.t.Fatalf("terminal not closed within %s: %v", within, err)
		}
	}
	return websocket.CloseStatus(tm.closed)
}

var (
	pidLine  = regexp.MustCompile(`PID=(\d+) BG=(\d+)`)
	sizeLine = regexp.MustCompile(`(\d+) (\d+)\r?\n`)
)

// shellPIDs starts a background sleep in the session and returns the
// shell's pid and the sleep's.
func (tm *term) shellPIDs() (shell, bg int) {
	tm.t.Helper()
	tm.send("sleep 300 & echo PID=$$ BG=$!\n")
	m := tm.expect(pidLine, 10*time.Second)
	shell, _ = strconv.Atoi(m[1])
	bg, _ = strconv.Atoi(m[2])
	return shell, bg
}

// waitPIDsGone fails the test unless every pid has exited within d.
func waitPIDsGone(t *testing.T, d time.Duration, pids ...int) time.Duration {
	t.Helper()
	start := time.Now()
	for _, pid := range pids {
		for !processGone(pid) {
			if time.Since(start) > d {
				t.Fatalf("pid %d still alive %s after the session ended", pid, d)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return time.Since(start)
}

// TestTerminalEndToEnd is the README's terminal walk-through with the
// real binaries: a shell on an agent started with --allow-terminal, a
// command typed, a resize, exit with a code, the session listed and its
// recording in asciicast v2.
func TestTerminalEndToEnd(t *testing.T) {
	t.Parallel()
	f := startSessionFixture(t, nil, "--allow-terminal", "--terminal-shell", "/bin/sh")
	tm := openTerminal(t, f, "?cols=80&rows=24")
	if tm.session.Mode != terminalproto.ModeControl || tm.session.AgentID != f.id {
		t.Fatalf("session message = %+v", tm.session)
	}
	tm.send("echo hello-$((40+2))\n")
	tm.expect(regexp.MustCompile(`hello-42`), 10*time.Second)
	tm.control(terminalproto.Message{Type: terminalproto.TypeResize, Cols: 132, Rows: 40})
	tm.send("stty size\n")
	if m := tm.expect(sizeLine, 10*time.Second); m[1] != "40" || m[2] != "132" {
		t.Fatalf("stty size after resize = %q, want 40 132", m[0])
	}
	tm.send("exit 3\n")
	if code := tm.waitClosed(10 * time.Second); code != websocket.StatusNormalClosure {
		t.Fatalf("close = %d, want 1000", code)
	}
	if tm.exit == nil || tm.exit.ExitCode == nil || *tm.exit.ExitCode != 3 {
		t.Fatalf("exit message = %+v, want exit_code 3", tm.exit)
	}
	checkRecording(t, f, tm.session.SessionID, "hello-42")
	checkSessionAudited(t, f, tm.session.SessionID)
	checkTicketSingleUse(t, f)
}

// checkTicketSingleUse opens a terminal with a ticket (as a browser
// does), and fails the test unless the same ticket is refused after.
func checkTicketSingleUse(t *testing.T, f *sessionFixture) {
	t.Helper()
	var tk struct {
		Ticket    string    `json:"ticket"`
		ExpiresAt time.Time `json:"expires_at"`
	}
	if code := postJSON(t, f.base+"/api/clients/"+f.id+"/terminal/tickets", `{}`, &tk); code != http.StatusCreated || tk.Ticket == "" {
		t.Fatalf("POST terminal/tickets = %d %+v", code, tk)
	}
	if d := time.Until(tk.ExpiresAt); d <= 0 || d > 31*time.Second {
		t.Fatalf("ticket expires in %s, want within 30s", d)
	}
	tm := openTerminal(t, f, "?ticket="+tk.Ticket)
	tm.send("exit\n")
	tm.waitClosed(10 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	url := "ws" + strings.TrimPrefix(f.base, "http") + "/api/clients/" + f.id + "/terminal?ticket=" + tk.Ticket
	_, res, err := websocket.Dial(ctx, url, nil)
	if err == nil || res == nil || res.StatusCode != http.StatusUnauthorized || !strings.Contains(responseText(res), "ticket_invalid") {
		t.Fatalf("reused ticket: %v %s, want 401 ticket_invalid", err, responseText(res))
	}
}

// checkRecording lists the session and parses its recording as
// asciicast v2: a header object, then [time, "o", text] events in time
// order that together hold want.
func checkRecording(t *testing.T, f *sessionFixture, id, want string) {
	t.Helper()
	code, body := get(f.base + "/api/sessions/" + id)
	if code != http.StatusOK || !strings.Contains(body, `"ended"`) {
		t.Fatalf("GET /api/sessions/%s = %d %s", id, code, body)
	}
	code, body = get(f.base + "/api/sessions/" + id + "/recording")
	if code != http.StatusOK {
		t.Fatalf("recording = %d %s", code, body)
	}
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(nil, 1<<20)
	var hdr struct {
		Version       int `json:"version"`
		Width, Height int
		Timestamp     int64 `json:"timestamp"`
	}
	if !sc.Scan() || json.Unmarshal(sc.Bytes(), &hdr) != nil || hdr.Version != 2 || hdr.Width != 80 || hdr.Height != 24 || hdr.Timestamp == 0 {
		t.Fatalf("recording header = %q", sc.Text())
	}
	var text strings.Builder
	last := 0.0
	for sc.Scan() {
		var ev []any
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil || len(ev) != 3 {
			t.Fatalf("recording event %q: %v", sc.Text(), err)
		}
		at, ok1 := ev[0].(float64)
		kind, ok2 := ev[1].(string)
		data, ok3 := ev[2].(string)
		if !ok1 || !ok2 || !ok3 || at < last || (kind != "o" && kind != "r") {
			t.Fatalf("recording event %q is not [time, \"o\"|\"r\", text] in order", sc.Text())
		}
		last = at
		if kind == "o" {
			text.WriteString(data)
		}
	}
	if !strings.Contains(text.String(), want) {
		t.Fatalf("recording output lacks %q: %q", want, text.String())
	}
}

// checkSessionAudited finds the session in the audit log, with no secret.
func checkSessionAudited(t *testing.T, f *sessionFixture, id string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		code, body := get(f.base + "/api/audit?limit=200")
		if code == http.StatusOK && strings.Contains(body, "session "+id+" exit ") {
			if strings.Contains(body, "ticket=") {
				t.Fatalf("audit log holds a ticket: %s", body)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("session %s not in the audit log with its exit code: %d %s", id, code, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestTerminalCLI runs "client-manager terminal" with piped input.
func TestTerminalCLI(t *testing.T) {
	t.Parallel()
	f := startSessionFixture(t, nil, "--allow-terminal", "--terminal-shell", "/bin/sh")
	cmd := exec.Command(filepath.Join(bin, "client-manager"), "terminal", "--url", f.base, f.id)
	cmd.Env = baseEnv()
	cmd.Stdin = strings.NewReader("echo from-$((2*21))\nexit 5\n")
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if cmd.ProcessState == nil || cmd.ProcessState.ExitCode() != 5 || !strings.Contains(out.String(), "from-42") {
		t.Fatalf("client-manager terminal = %v, stdout %q, stderr %q; want exit 5 and from-42", err, out.String(), errOut.String())
	}
}

// TestTerminalProcessGroupGone proves the whole session dies when the
// operator goes away, when the agent is killed and restarted, and after
// the idle timeout.
func TestTerminalProcessGroupGone(t *testing.T) {
	t.Parallel()
	f := startSessionFixture(t, nil, "--allow-terminal", "--terminal-shell", "/bin/sh", "--terminal-idle-timeout", "2s")
	t.Run("operator leaves", func(t *testing.T) {
		tm := openTerminal(t, f, "")
		shell, bg := tm.shellPIDs()
		tm.ws.CloseNow()
		t.Logf("operator_left_to_gone_ms=%d", waitPIDsGone(t, 5*time.Second, shell, bg).Milliseconds())
	})
	t.Run("idle timeout", func(t *testing.T) {
		tm := openTerminal(t, f, "")
		shell, bg := tm.shellPIDs()
		if code := tm.waitClosed(10 * time.Second); int(code) != int(terminalproto.CloseIdle) {
			t.Fatalf("idle close = %d, want %d", code, terminalproto.CloseIdle)
		}
		waitPIDsGone(t, 5*time.Second, shell, bg)
	})
	t.Run("agent restarts", func(t *testing.T) {
		tm := openTerminal(t, f, "")
		shell, bg := tm.shellPIDs()
		f.restartAgent(t)
		waitOnline(t, f.base, 15*time.Second)
		waitPIDsGone(t, 5*time.Second, shell, bg)
	})
}

// TestTerminalRefused covers the terminal's bad input with real binaries:
// an agent without --allow-terminal, a viewer token, tickets reused and
// for another agent, an unknown session to watch. The agent stays
// connected throughout.
func TestTerminalRefused(t *testing.T) {
	t.Parallel()
	f := startSessionFixture(t, nil)
	wsBase := "ws" + strings.TrimPrefix(f.base, "http")
	// Once an operator token exists, loopback callers need one too.
	var admin, viewer struct{ Token string }
	if code := postJSON(t, f.base+"/api/tokens", `{"name":"admin","role":"admin"}`, &admin); code != http.StatusCreated {
		t.Fatalf("create admin token = %d", code)
	}
	adminHdr := http.Header{"Authorization": {"Bearer " + admin.Token}}
	if code := postJSONAuth(t, f.base+"/api/tokens", admin.Token, `{"name":"viewer","role":"viewer"}`, &viewer); code != http.StatusCreated {
		t.Fatalf("create viewer token = %d", code)
	}
	viewerHdr := http.Header{"Authorization": {"Bearer " + viewer.Token}}
	cases := []struct {
		name, path string
		hdr        http.Header
		status     int
		code       string
	}{
		{"agent does not allow it", "/api/clients/" + f.id + "/terminal", adminHdr, http.StatusConflict, "terminal_not_allowed"},
		{"unknown agent", "/api/clients/nope/terminal", adminHdr, http.StatusNotFound, "not_found"},
		{"unknown session", "/api/sessions/nope/watch", adminHdr, http.StatusNotFound, "not_found"},
		{"bad ticket", "/api/clients/" + f.id + "/terminal?ticket=forged", nil, http.StatusUnauthorized, "ticket_invalid"},
		{"no credentials", "/api/clients/" + f.id + "/terminal", nil, http.StatusUnauthorized, "unauthorized"},
		{"bad query", "/api/clients/" + f.id + "/terminal?cols=wide", adminHdr, http.StatusBadRequest, "invalid_query"},
		{"viewer role", "/api/clients/" + f.id + "/terminal", viewerHdr, http.StatusForbidden, "forbidden"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_, res, err := websocket.Dial(ctx, wsBase+c.path, &websocket.DialOptions{HTTPHeader: c.hdr})
			if err == nil || res == nil || res.StatusCode != c.status {
				t.Fatalf("dial = %v %s, want %d", err, responseText(res), c.status)
			}
			if body := responseText(res); !strings.Contains(body, `"`+c.code+`"`) {
				t.Fatalf("body %s lacks %q", body, c.code)
			}
		})
	}
	req, _ := http.NewRequest(http.MethodGet, f.base+"/api/clients?status=online", nil)
	req.Header = adminHdr
	res, err := httpc.Do(req)
	if err != nil {
		t.Fatalf("list clients: %v", err)
	}
	defer res.Body.Close()
	if body := responseText(res); res.StatusCode != http.StatusOK || !strings.Contains(body, f.id) {
		t.Fatalf("agent not online after the refusals: %d %s", res.StatusCode, body)
	}
}
