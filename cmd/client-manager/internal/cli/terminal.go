package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/coder/websocket"
	"golang.org/x/term"

	"github.com/home-console/client-manager/internal/cmdflags"
	"github.com/home-console/client-manager/pkg/terminalproto"
)

const terminalUsageText = `Usage:
  client-manager terminal [--url URL] AGENT_ID      open a terminal on an agent
  client-manager terminal [--url URL] --watch SESSION_ID   watch a session, read-only

Connects to the client manager's terminal WebSocket (docs/api.md#terminal)
and joins it to this terminal: keystrokes go to the agent's shell, its output
comes here, and a window resize follows. The agent must run with
--allow-terminal. The operator token is read from CLIENT_MANAGER_TOKEN (not a
flag, so that it stays out of the process list); without it, only a client
manager on this host's loopback address accepts the connection (as admin).
Exit status: the remote shell's exit code; 1 when the session could not be
opened or was cut; 2 bad flags or arguments.

Flags:
`

func terminalUsage(w io.Writer) {
	fmt.Fprint(w, terminalUsageText)
	fmt.Fprintln(w, "  -h, --help    print this help and exit")
	fmt.Fprintln(w, "  --url URL     the client manager (default http://127.0.0.1:10000; or CLIENT_MANAGER_URL)")
	fmt.Fprintln(w, "  --watch       the argument is a session id: watch it read-only")
}

// terminalMain runs "client-manager terminal".
func terminalMain(ctx context.Context, args []string, stdin *os.File, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("client-manager terminal", flag.ContinueOnError)
	base := fs.String("url", envOr("CLIENT_MANAGER_URL", "http://127.0.0.1:10000"), "")
	watch := fs.Bool("watch", false, "")
	cmd := cmdflags.Command{Flags: fs, Usage: terminalUsage, MinArgs: 1, MaxArgs: 1}
	if code, done := cmd.Parse(args, stdout, stderr); done {
		return code
	}
	target, err := terminalURL(*base, fs.Arg(0), *watch, stdin)
	if err != nil {
		fmt.Fprintln(stderr, "client-manager terminal:", err)
		return cmdflags.ExitUsage
	}
	t := &termClient{stdin: stdin, stdout: stdout, stderr: stderr, watch: *watch}
	code, err := t.run(ctx, target, os.Getenv("CLIENT_MANAGER_TOKEN"))
	if err != nil {
		fmt.Fprintln(stderr, "client-manager terminal:", err)
		return cmdflags.ExitError
	}
	return code
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// terminalURL builds the WebSocket URL of the terminal (or watch) endpoint.
func terminalURL(base, id string, watch bool, stdin *os.File) (string, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("--url must be an http:// or https:// URL, got %q", base)
	}
	u.Scheme = strings.Replace(u.Scheme, "http", "ws", 1)
	if watch {
		u.Path = strings.TrimSuffix(u.Path, "/") + "/api/sessions/" + url.PathEscape(id) + "/watch"
		return u.String(), nil
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + "/api/clients/" + url.PathEscape(id) + "/terminal"
	q := url.Values{}
	if cols, rows, err := term.GetSize(int(stdin.Fd())); err == nil && cols > 0 && rows > 0 {
		q.Set("cols", fmt.Sprint(cols))
		q.Set("rows", fmt.Sprint(rows))
	}
	if t := os.Getenv("TERM"); t != "" && term.IsTerminal(int(stdin.Fd())) {
		q.Set("term", t)
	}
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// termClient joins a local terminal (or pipes) to a remote session.
type termClient struct {
	stdin          *os.File
	stdout, stderr io.Writer
	watch          bool
}

// run connects, bridges until the session ends and returns the remote
// exit code.
func (t *termClient) run(ctx context.Context, target, token string) (int, error) {
	hdr := http.Header{}
	if token != "" {
		hdr.Set("Authorization", "Bearer "+token)
	}
	ws, resp, err := websocket.Dial(ctx, target, &websocket.DialOptions{
		HTTPHeader: hdr, Subprotocols: []string{terminalproto.Subprotocol}})
	if err != nil {
		return 0, dialError(resp, err)
	}
	defer ws.CloseNow()
	ws.SetReadLimit(1 << 20)
	if !t.watch && term.IsTerminal(int(t.stdin.Fd())) {
		old, err := term.MakeRaw(int(t.stdin.Fd()))
		if err == nil {
			defer func() { _ = term.Restore(int(t.stdin.Fd()), old) }()
		}
		go t.followResize(ctx, ws)
	}
	if !t.watch {
		go t.pumpInput(ctx, ws)
	}
	return t.pumpOutput(ctx, ws)
}

// dialError explains a refused connection with the server's JSON error.
func dialError(resp *http.Response, err error) error {
	if resp == nil || resp.StatusCode == http.StatusSwitchingProtocols {
		return fmt.Errorf("connect: %w", err)
	}
	var body struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	if resp.Body != nil {
		_ = json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&body)
	}
	if body.Error.Code == "" {
		return fmt.Errorf("connect: HTTP %d", resp.StatusCode)
	}
	return fmt.Errorf("HTTP %d %s: %s", resp.StatusCode, body.Error.Code, body.Error.Message)
}

// pumpInput sends stdin as binary frames until it ends, then closes the
// remote shell's input with Ctrl-D when stdin is not a terminal.
func (t *termClient) pumpInput(ctx context.Context, ws *websocket.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := t.stdin.Read(buf)
		if n > 0 {
			if werr := ws.Write(ctx, websocket.MessageBinary, buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if !term.IsTerminal(int(t.stdin.Fd())) {
				_ = ws.Write(ctx, websocket.MessageBinary, []byte{4})
			}
			return
		}
	}
}

// followResize sends the local window size on every SIGWINCH.
func (t *termClient) followResize(ctx context.Context, ws *websocket.Conn) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGWINCH)
	defer signal.Stop(ch)
	for {
		select {
		case <-ctx.Done():
			return
		case <-ch:
			cols, rows, err := term.GetSize(int(t.stdin.Fd()))
			if err != nil {
				continue
			}
			b, _ := json.Marshal(terminalproto.Message{Type: terminalproto.TypeResize, Cols: cols, Rows: rows})
			if ws.Write(ctx, websocket.MessageText, b) != nil {
				return
			}
		}
	}
}

// pumpOutput copies the session's output to stdout until the server
// closes, and returns the exit code its exit message carried.
func (t *termClient) pumpOutput(ctx context.Context, ws *websocket.Conn) (int, error) {
	code := -1
	for {
		typ, b, err := ws.Read(ctx)
		if err != nil {
			return t.ended(code, err)
		}
		if typ == websocket.MessageBinary {
			if _, err := t.stdout.Write(b); err != nil {
				return 0, err
			}
			continue
		}
		var m terminalproto.Message
		if json.Unmarshal(b, &m) == nil && m.Type == terminalproto.TypeExit && m.ExitCode != nil {
			code = *m.ExitCode
		}
		if m.Type == terminalproto.TypeSession {
			fmt.Fprintf(t.stderr, "[session %s on agent %s, %s]\r\n", m.SessionID, m.AgentID, m.Mode)
		}
	}
}

// ended turns the connection's end into the command's result.
func (t *termClient) ended(code int, err error) (int, error) {
	var ce websocket.CloseError
	if !errors.As(err, &ce) {
		return 0, fmt.Errorf("connection lost: %w", err)
	}
	if terminalproto.CloseCode(ce.Code) != terminalproto.CloseNormal {
		return 0, fmt.Errorf("session ended: %d %s", int(ce.Code), ce.Reason)
	}
	if code < 0 {
		return cmdflags.ExitOK, nil
	}
	return code, nil
}
