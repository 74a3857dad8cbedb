package sessions

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"

	"github.com/home-console/client-manager/internal/fleet"
	"github.com/home-console/client-manager/internal/ratelimit"
	"github.com/home-console/client-manager/internal/secret"
	"github.com/home-console/client-manager/pkg/agentproto"
	"github.com/home-console/client-manager/pkg/terminalproto"
)

// Bounds of the operator's terminal WebSocket.
const (
	// MaxFrameBytes is the largest frame an operator may send (1009 beyond).
	MaxFrameBytes = 64 << 10
	// MaxTerminalSize bounds cols and rows.
	MaxTerminalSize = 1000
	// readBuffer is the chunk read from an agent stream at once.
	readBuffer = 32 << 10
	// ControlRate and ControlBurst bound an operator's resize and signal
	// messages (each is a control message on the agent's connection,
	// whose queue must not fill); beyond, the operator is closed with 1008.
	ControlRate  = 20
	ControlBurst = 40
)

// signals are the signals an operator may send (agentproto.TerminalSignal).
var signals = []string{"SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGKILL", "SIGTSTP", "SIGCONT", "SIGWINCH", "SIGUSR1", "SIGUSR2"}

// terminal is one running session.
type terminal struct {
	m        *Manager
	rec      fleet.TerminalSession // fixed fields; counters below
	stream   Stream
	recorder *recorder
	bytesIn  atomic.Int64
	bytesOut atomic.Int64
	controls *ratelimit.Bucket

	mu       sync.Mutex
	watchers map[*watcher]struct{}
	ended    bool
	exit     terminalproto.Message
	code     terminalproto.CloseCode
	done     chan struct{}
}

// subprotocolOK reports whether r offers no subprotocol or ours.
func subprotocolOK(r *http.Request) bool {
	offered := r.Header.Values("Sec-WebSocket-Protocol")
	if len(offered) == 0 {
		return true
	}
	for _, v := range offered {
		for _, p := range strings.Split(v, ",") {
			if strings.TrimSpace(p) == terminalproto.Subprotocol {
				return true
			}
		}
	}
	return false
}

// acceptOptions accept our subprotocol; the API has applied its origin
// policy already, so the library's own origin check is off.
var acceptOptions = &websocket.AcceptOptions{Subprotocols: []string{terminalproto.Subprotocol}, InsecureSkipVerify: true}

// ServeTerminal opens a terminal on req.AgentID and bridges it to the
// operator's WebSocket on w, r until the session ends; it returns the
// session's final record. Before upgrading it returns, without writing
// to w, a coded error: fleet.CodeAgentOffline, CodeTerminalNotAllowed
// (the agent does not offer terminals or refused with
// terminal_disabled), CodeTerminalLimit, CodeInvalidSubprotocol (a
// client offering subprotocols without ours) or an agent's code. Once it wrote to w (the upgrade, or the library's own
// refusal of a bad handshake) its error is nil.
func (m *Manager) ServeTerminal(w http.ResponseWriter, r *http.Request, req fleet.TerminalRequest) (fleet.TerminalSession, error) {
	if !subprotocolOK(r) {
		return fleet.TerminalSession{}, fleet.Errorf(fleet.CodeInvalidSubprotocol, "offer the %s subprotocol or none", terminalproto.Subprotocol)
	}
	if err := m.enter(); err != nil {
		return fleet.TerminalSession{}, err
	}
	defer m.running.Done()
	if ok, err := m.hasFeature(req.AgentID, agentproto.FeatureTerminal); err != nil || !ok {
		return fleet.TerminalSession{}, cmpErr(err, fleet.Errorf(fleet.CodeTerminalNotAllowed, "the agent does not allow terminals (start it with --allow-terminal)"))
	}
	open := agentproto.StreamOpen{Kind: agentproto.StreamTerminal, Terminal: &agentproto.TerminalOpen{Cols: req.Cols, Rows: req.Rows, Term: req.Term}}
	st, _, err := m.streams.OpenStream(r.Context(), req.AgentID, open)
	if err != nil {
		return fleet.TerminalSession{}, m.agentError(err, "terminal", fleet.CodeTerminalNotAllowed)
	}
	conn, err := websocket.Accept(w, r, acceptOptions)
	if err != nil {
		_ = st.Abort(agentproto.StreamErrorCancelled, "operator handshake failed")
		return fleet.TerminalSession{}, nil
	}
	t, err := m.start(st, req)
	if err != nil {
		_ = st.Abort(agentproto.StreamErrorShutdown, "client manager stopping")
		_ = conn.Close(websocket.StatusGoingAway, "client manager stopping")
		return fleet.TerminalSession{}, nil
	}
	t.serve(conn)
	return m.finish(t), nil
}

// cmpErr returns err if it is not nil, else alt.
func cmpErr(err, alt error) error {
	if err != nil {
		return err
	}
	return alt
}

// start registers a new session over st and opens its recording; it
// fails once Shutdown began.
func (m *Manager) start(st Stream, req fleet.TerminalRequest) (*terminal, error) {
	now := time.Now().UTC()
	t := &terminal{m: m, stream: st, watchers: map[*watcher]struct{}{}, done: make(chan struct{}),
		controls: ratelimit.NewBucket(ControlRate, ControlBurst)}
	t.rec = fleet.TerminalSession{
		ID: secret.NewID("ses_"), AgentID: req.AgentID, Operator: req.Operator, Role: req.Role,
		StartedAt: now, Cols: req.Cols, Rows: req.Rows, Term: req.Term, State: fleet.SessionActive,
	}
	h := castHeader{Version: 2, Width: req.Cols, Height: req.Rows, Timestamp: now.Unix(),
		Env: map[string]string{"TERM": req.Term}, Title: req.AgentID + " " + req.Operator}
	rec, err := newRecorder(m.store.castPath(t.rec.ID), h, now, m.cfg.RecordingMaxBytes)
	if err != nil {
		m.cfg.Log.Error("terminal session not recorded", "agent_id", req.AgentID, "session_id", t.rec.ID, "err", err)
	}
	t.recorder = rec
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		if rec != nil {
			_, _ = rec.Close()
		}
		return nil, fleet.Errorf(fleet.CodeUnavailable, "the client manager is stopping")
	}
	m.live[t.rec.ID] = t
	m.mu.Unlock()
	m.store.write(t.rec)
	m.cfg.Log.Info("terminal session started", "agent_id", req.AgentID, "session_id", t.rec.ID, "operator", req.Operator)
	return t, nil
}

// finish stores the ended session's record and prunes recordings.
func (m *Manager) finish(t *terminal) fleet.TerminalSession {
	m.mu.Lock()
	delete(m.live, t.rec.ID)
	m.mu.Unlock()
	rec := t.record()
	if t.recorder != nil {
		size, err := t.recorder.Close()
		if err != nil {
			m.cfg.Log.Error("terminal recording incomplete", "agent_id", rec.AgentID, "session_id", rec.ID, "err", err)
		}
		rec.RecordingBytes = size
	}
	m.store.write(rec)
	m.cfg.Log.Info("terminal session ended", "agent_id", rec.AgentID, "session_id", rec.ID, "reason", rec.EndReason)
	m.Prune(time.Now())
	return rec
}

// record is the session's record now.
func (t *terminal) record() fleet.TerminalSession {
	rec := t.rec
	rec.BytesIn, rec.BytesOut = t.bytesIn.Load(), t.bytesOut.Load()
	if t.recorder != nil {
		rec.RecordingBytes = t.recorder.Size()
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ended {
		now := time.Now().UTC()
		rec.State, rec.EndedAt, rec.ExitCode, rec.EndReason = fleet.SessionEnded, &now, t.exit.ExitCode, t.exit.Reason
	}
	return rec
}

// serve runs the session's two pumps until it ends and closes conn.
func (t *terminal) serve(conn *websocket.Conn) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	conn.SetReadLimit(MaxFrameBytes)
	hello := terminalproto.Message{Type: terminalproto.TypeSession, SessionID: t.rec.ID, AgentID: t.rec.AgentID,
		Mode: terminalproto.ModeControl, Cols: t.rec.Cols, Rows: t.rec.Rows}
	in := make(chan struct{})
	if err := writeJSON(ctx, conn, t.m.cfg.WriteTimeout, hello); err == nil {
		go func() {
			defer close(in)
			t.pumpIn(ctx, conn)
		}()
	} else {
		close(in)
		_ = t.stream.Abort(agentproto.StreamErrorCancelled, "operator gone")
	}
	msg, code := t.pumpOut(ctx, conn)
	t.end(msg, code)
	if code != 0 {
		_ = writeJSON(ctx, conn, t.m.cfg.WriteTimeout, msg)
		_ = conn.Close(websocket.StatusCode(code), closeReason(msg.Reason))
	}
	cancel()
	_ = conn.CloseNow()
	<-in
}

// end marks the session ended with msg, for watchers to close with code.
func (t *terminal) end(msg terminalproto.Message, code terminalproto.CloseCode) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.ended, t.exit, t.code = true, msg, code
	close(t.done)
}

// maxCloseReason is the most a close frame's reason holds.
const maxCloseReason = 123

// closeReason cuts reason to a close frame's limit, on a character
// boundary.
func closeReason(reason string) string {
	if len(reason) <= maxCloseReason {
		return reason
	}
	cut := maxCloseReason
	for cut > 0 && !utf8.RuneStart(reason[cut]) {
		cut--
	}
	return reason[:cut]
}

// writeJSON writes one text message within timeout.
func writeJSON(ctx context.Context, conn *websocket.Conn, timeout time.Duration, msg terminalproto.Message) error {
	data, _ := json.Marshal(msg)
	return writeFrame(ctx, conn, timeout, websocket.MessageText, data)
}

func writeFrame(ctx context.Context, conn *websocket.Conn, timeout time.Duration, typ websocket.MessageType, data []byte) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return conn.Write(ctx, typ, data)
}

// pumpOut copies the agent's output to the operator, the recording and
// the watchers until the stream ends; it returns the exit message and
// the close code for the operator (0: the operator is gone already).
func (t *terminal) pumpOut(ctx context.Context, conn *websocket.Conn) (terminalproto.Message, terminalproto.CloseCode) {
	buf := make([]byte, readBuffer)
	operator := true
	for {
		n, err := t.stream.Read(buf)
		if n > 0 {
			t.bytesOut.Add(int64(n))
			if t.recorder != nil {
				t.recorder.Event(time.Now(), eventOutput, buf[:n])
			}
			t.broadcast(buf[:n])
			if operator && writeFrame(ctx, conn, t.m.cfg.WriteTimeout, websocket.MessageBinary, buf[:n]) != nil {
				operator = false
				_ = t.stream.Abort(agentproto.StreamErrorCancelled, "operator too slow or gone")
			}
		}
		if err != nil {
			msg, code := t.exitOf(err)
			if !operator {
				code = 0
			}
			return msg, code
		}
	}
}

// exitOf is the exit message and close code of a stream's end.
func (t *terminal) exitOf(err error) (terminalproto.Message, terminalproto.CloseCode) {
	msg := terminalproto.Message{Type: terminalproto.TypeExit}
	if errors.Is(err, io.EOF) {
		_ = t.stream.CloseWrite(agentproto.StreamClose{})
		c, _ := t.stream.PeerClose()
		msg.ExitCode, msg.Reason = c.ExitCode, "exited"
		return msg, terminalproto.CloseNormal
	}
	c, ok := t.m.streams.CloseOf(err)
	switch {
	case !ok:
		msg.Reason = "stream failed"
		return msg, terminalproto.CloseInternal
	case c.Code == agentproto.StreamErrorDisconnected:
		msg.Reason = "agent disconnected"
		return msg, terminalproto.CloseAgentGone
	case c.Code == "terminal_idle_timeout":
		msg.Reason = "idle timeout"
		return msg, terminalproto.CloseIdle
	case c.Code == agentproto.StreamErrorShutdown:
		msg.Reason = "shutdown"
		return msg, terminalproto.CloseGoingAway
	case c.Code == agentproto.StreamErrorCancelled:
		msg.Reason = "operator closed"
		return msg, terminalproto.CloseNormal
	}
	msg.Reason = fmt.Sprintf("ended by the agent: %s", c.Code)
	return msg, terminalproto.CloseTerminated
}

// pumpIn copies the operator's keystrokes and control messages to the
// agent until the operator's connection ends or breaks a rule (it is
// then closed with 1007 or 1008); either way the stream is aborted.
func (t *terminal) pumpIn(ctx context.Context, conn *websocket.Conn) {
	defer func() { _ = t.stream.Abort(agentproto.StreamErrorCancelled, "operator closed") }()
	for {
		typ, data, err := conn.Read(ctx)
		if err != nil {
			return
		}
		if typ == websocket.MessageBinary {
			if t.m.cfg.RecordInput && t.recorder != nil {
				t.recorder.Event(time.Now(), eventInput, data)
			}
			n, err := t.stream.WriteContext(ctx, data)
			t.bytesIn.Add(int64(n))
			if err != nil {
				return
			}
			continue
		}
		if code, reason := t.control(data); code != 0 {
			_ = conn.Close(websocket.StatusCode(code), closeReason(reason))
			return
		}
	}
}

// control handles one text frame of the operator; it returns the close
// code and reason of a frame that breaks the rules.
func (t *terminal) control(data []byte) (terminalproto.CloseCode, string) {
	msg, err := decodeMessage(data)
	if err != nil {
		return terminalproto.CloseInvalidData, err.Error()
	}
	if _, ok := t.controls.Allow(time.Now()); !ok {
		return terminalproto.ClosePolicy, fmt.Sprintf("more than %d resize and signal messages per second", ControlRate)
	}
	switch msg.Type {
	case terminalproto.TypeResize:
		if msg.Cols < 1 || msg.Rows < 1 || msg.Cols > MaxTerminalSize || msg.Rows > MaxTerminalSize {
			return terminalproto.ClosePolicy, fmt.Sprintf("resize: cols and rows must be 1 to %d", MaxTerminalSize)
		}
		if t.recorder != nil {
			t.recorder.Event(time.Now(), eventResize, fmt.Appendf(nil, "%dx%d", msg.Cols, msg.Rows))
		}
		err = t.stream.Control(agentproto.TerminalResize{Cols: msg.Cols, Rows: msg.Rows})
	case terminalproto.TypeSignal:
		if !slices.Contains(signals, msg.Signal) {
			return terminalproto.ClosePolicy, "signal must be one of " + strings.Join(signals, ", ")
		}
		err = t.stream.Control(agentproto.TerminalSignal{Signal: msg.Signal})
	default:
		return terminalproto.ClosePolicy, fmt.Sprintf("message type %q not allowed here", msg.Type)
	}
	if err != nil {
		return terminalproto.CloseInternal, "control message not delivered"
	}
	return 0, ""
}
