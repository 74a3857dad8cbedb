package sessions

import (
	"context"
	"net/http"
	"sync"

	"github.com/coder/websocket"

	"github.com/home-console/client-manager/internal/access"
	"github.com/home-console/client-manager/internal/fleet"
	"github.com/home-console/client-manager/internal/strictjson"
	"github.com/home-console/client-manager/pkg/terminalproto"
)

// watcher is one read-only viewer of a session: output frames wait in a
// bounded queue; a full queue marks it slow, and it is closed with 4012.
type watcher struct {
	queue chan []byte
	slow  chan struct{}
	once  sync.Once
}

// broadcast hands a copy of data to every watcher without blocking; a
// watcher whose queue is full is dropped.
func (t *terminal) broadcast(data []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.watchers) == 0 {
		return
	}
	frame := append([]byte(nil), data...)
	for w := range t.watchers {
		select {
		case w.queue <- frame:
		default:
			delete(t.watchers, w)
			w.once.Do(func() { close(w.slow) })
		}
	}
}

// addWatcher registers w; it returns false once the session ended.
func (t *terminal) addWatcher(w *watcher) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ended {
		return false
	}
	t.watchers[w] = struct{}{}
	return true
}

func (t *terminal) removeWatcher(w *watcher) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.watchers, w)
}

// liveSession returns the running session id, or the coded error for a
// session that ended (fleet.CodeSessionEnded) or never existed
// (fleet.CodeNotFound).
func (m *Manager) liveSession(id string) (*terminal, error) {
	m.mu.Lock()
	t, ok := m.live[id]
	m.mu.Unlock()
	if ok {
		return t, nil
	}
	if _, ok := m.store.get(id); ok {
		return nil, fleet.Errorf(fleet.CodeSessionEnded, "session %q has ended; its recording is at /api/sessions/%s/recording", id, id)
	}
	return nil, fleet.Errorf(fleet.CodeNotFound, "session %q not found", id)
}

// SessionAgent returns the agent a session runs on, for checking a
// ticket; the error is fleet.CodeNotFound.
func (m *Manager) SessionAgent(id string) (string, error) {
	if rec, ok := m.store.get(id); ok {
		return rec.AgentID, nil
	}
	return "", fleet.Errorf(fleet.CodeNotFound, "session %q not found", id)
}

// ServeWatch serves a read-only view of a running session on w, r: a
// TypeSession message in ModeWatch, then the output from now on, then
// the session's TypeExit and close code. Before upgrading it returns a
// coded error without writing to w: fleet.CodeNotFound,
// fleet.CodeSessionEnded or fleet.CodeInvalidSubprotocol. A watcher's binary
// frames are ignored; a text frame closes it with 1008; one that falls
// behind by more than the watcher queue is closed with 4012.
func (m *Manager) ServeWatch(w http.ResponseWriter, r *http.Request, p access.Principal, sessionID string) error {
	if !subprotocolOK(r) {
		return fleet.Errorf(fleet.CodeInvalidSubprotocol, "offer the %s subprotocol or none", terminalproto.Subprotocol)
	}
	if err := m.enter(); err != nil {
		return err
	}
	defer m.running.Done()
	t, err := m.liveSession(sessionID)
	if err != nil {
		return err
	}
	conn, err := websocket.Accept(w, r, acceptOptions)
	if err != nil {
		return nil
	}
	conn.SetReadLimit(MaxFrameBytes)
	wt := &watcher{queue: make(chan []byte, m.cfg.WatcherQueue), slow: make(chan struct{})}
	if !t.addWatcher(wt) {
		_ = conn.Close(websocket.StatusNormalClosure, "session ended")
		return nil
	}
	defer t.removeWatcher(wt)
	m.cfg.Log.Info("terminal session watched", "agent_id", t.rec.AgentID, "session_id", sessionID, "watcher", p.Name)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go readOnly(ctx, conn, cancel)
	t.feed(ctx, conn, wt)
	_ = conn.CloseNow()
	return nil
}

// readOnly reads a watcher's frames: binary ones are ignored, a text one
// closes the connection with 1008. It cancels the watch when the
// connection ends.
func readOnly(ctx context.Context, conn *websocket.Conn, cancel context.CancelFunc) {
	defer cancel()
	for {
		typ, _, err := conn.Read(ctx)
		if err != nil {
			return
		}
		if typ == websocket.MessageText {
			_ = conn.Close(websocket.StatusCode(terminalproto.ClosePolicy), "watchers are read-only")
			return
		}
	}
}

// feed writes the session to a watcher until it ends, falls behind or
// goes away.
func (t *terminal) feed(ctx context.Context, conn *websocket.Conn, wt *watcher) {
	timeout := t.m.cfg.WriteTimeout
	hello := terminalproto.Message{Type: terminalproto.TypeSession, SessionID: t.rec.ID, AgentID: t.rec.AgentID,
		Mode: terminalproto.ModeWatch, Cols: t.rec.Cols, Rows: t.rec.Rows}
	if writeJSON(ctx, conn, timeout, hello) != nil {
		return
	}
	for {
		select {
		case frame := <-wt.queue:
			if writeFrame(ctx, conn, timeout, websocket.MessageBinary, frame) != nil {
				return
			}
		case <-wt.slow:
			_ = conn.Close(websocket.StatusCode(terminalproto.CloseSlowWatcher), "watcher fell behind the session")
			return
		case <-t.done:
			t.drainTo(ctx, conn, wt)
			return
		case <-ctx.Done():
			return
		}
	}
}

// drainTo writes what is queued, the exit message, and closes.
func (t *terminal) drainTo(ctx context.Context, conn *websocket.Conn, wt *watcher) {
	timeout := t.m.cfg.WriteTimeout
	for {
		select {
		case frame := <-wt.queue:
			if writeFrame(ctx, conn, timeout, websocket.MessageBinary, frame) != nil {
				return
			}
			continue
		default:
		}
		break
	}
	t.mu.Lock()
	msg, code := t.exit, t.code
	t.mu.Unlock()
	if code == 0 {
		code = terminalproto.CloseNormal
	}
	_ = writeJSON(ctx, conn, timeout, msg)
	_ = conn.Close(websocket.StatusCode(code), closeReason(msg.Reason))
}

// decodeMessage strictly decodes one control message.
func decodeMessage(data []byte) (terminalproto.Message, error) {
	var msg terminalproto.Message
	err := strictjson.Decode(data, &msg)
	return msg, err
}
