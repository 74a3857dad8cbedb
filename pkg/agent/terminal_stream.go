package agent

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/home-console/client-manager/pkg/agent/terminal"
	"github.com/home-console/client-manager/pkg/agentproto"
	"github.com/home-console/client-manager/pkg/agentstream"
)

// serveTerminal runs a terminal stream: a shell on a PTY whose output
// becomes the stream's data and whose input is the server's. The session
// ends, and every process in it is killed, when the shell exits (the
// stream's close carries its exit code), when the stream is aborted or the
// server closes its side, when the connection ends, or at the idle timeout
// (aborted with terminal_idle_timeout).
func (a *Agent) serveTerminal(ctx context.Context, st *agentstream.Stream) {
	var req terminal.OpenRequest
	if t := st.Request().Terminal; t != nil {
		req = terminal.OpenRequest{Cols: t.Cols, Rows: t.Rows, Term: t.Term}
	}
	sess, err := a.term.Open(ctx, req)
	if err != nil {
		a.log.Warn("terminal refused", "stream_id", st.ID(), "err", err)
		refuse(st, err, terminal.ErrStart.Code())
		return
	}
	id, recorded := sess.ID()
	if recorded {
		a.termState.add(id)
	}
	defer func() {
		_ = sess.Close()
		if recorded {
			a.termState.remove(id)
		}
	}()
	if err := st.Accept(agentproto.StreamOpened{PID: sess.PID()}); err != nil {
		return
	}
	a.log.Info("terminal session started", "stream_id", st.ID(), "pid", sess.PID())
	go terminalInput(st, sess)
	go a.terminalControls(st, sess)
	a.terminalOutput(st, sess)
}

// terminalFramesPerSecond bounds the frames of terminal output an agent
// sends, summed over its terminals, well below the server's inbound
// stream message rate (4000 per second by default): a program printing
// at full speed fills few large frames instead of many small ones.
const terminalFramesPerSecond = 1000

// terminalOutput copies the PTY's output to the stream until the session
// ends, then closes the stream's agent side. Output is sent at once while
// the frame budget allows; beyond it, what arrives meanwhile is gathered
// into the next frame (up to a chunk).
func (a *Agent) terminalOutput(st *agentstream.Stream, sess *terminal.Session) {
	pieces := make(chan []byte, 8)
	stop := make(chan struct{})
	defer close(stop)
	go readPieces(sess, pieces, stop)
	var carry []byte
	for {
		frame, next, open := a.gather(carry, pieces)
		if len(frame) > 0 {
			if _, err := st.Write(frame); err != nil {
				return // aborted or disconnected: the caller's Close kills the session
			}
		}
		if !open {
			break
		}
		carry = next
	}
	code, reason := sess.Wait()
	if errors.Is(reason, terminal.ErrIdleTimeout) {
		_ = st.AbortWith(agentproto.StreamClose{Code: terminal.ErrIdleTimeout.Code(), Message: reason.Error()})
		return
	}
	_ = st.CloseWrite(agentproto.StreamClose{ExitCode: &code})
}

// readPieces reads the PTY until it ends, sending what each read returned
// on pieces, which it closes at the end (or when stop is closed).
func readPieces(sess *terminal.Session, pieces chan<- []byte, stop <-chan struct{}) {
	defer close(pieces)
	buf := make([]byte, agentproto.DefaultStreamChunkBytes)
	for {
		n, err := sess.Read(buf)
		if n > 0 {
			select {
			case pieces <- append([]byte(nil), buf[:n]...):
			case <-stop:
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// gather returns the next frame of output: first (or the next piece) plus
// the pieces that arrive before the frame budget has a token, up to a
// chunk; next is a piece that did not fit, open is false once the output
// ended (frame then holds its last bytes).
func (a *Agent) gather(first []byte, pieces <-chan []byte) (frame, next []byte, open bool) {
	frame = first
	if frame == nil {
		if frame, open = <-pieces; !open {
			return nil, nil, false
		}
	}
	var wait <-chan time.Time
	for len(frame) < agentproto.DefaultStreamChunkBytes {
		if wait == nil {
			d, ok := a.termFrames.Allow(time.Now())
			if ok {
				return frame, nil, true
			}
			wait = time.After(d)
		}
		select {
		case p, ok := <-pieces:
			if !ok {
				return frame, nil, false
			}
			if len(frame)+len(p) > agentproto.DefaultStreamChunkBytes {
				return frame, p, true
			}
			frame = append(frame, p...)
		case <-wait:
			wait = nil
		}
	}
	return frame, nil, true
}

// terminalInput copies the stream's data to the PTY as typed input until
// the server closes its side or the stream ends, then ends the session.
// Input arriving after the shell exited is read and dropped, so that the
// server's credit keeps flowing until it closes.
func terminalInput(st *agentstream.Stream, sess *terminal.Session) {
	buf := make([]byte, agentproto.DefaultStreamChunkBytes)
	if _, _, werr := pump(sess, st, buf); werr != nil {
		_, _, _ = pump(io.Discard, st, buf)
	}
	_ = sess.Close()
}

// terminalControls applies the server's resizes and signals until the
// stream or the session is over. An invalid one is logged and ignored.
func (a *Agent) terminalControls(st *agentstream.Stream, sess *terminal.Session) {
	for {
		var c any
		var ok bool
		select {
		case <-st.Done():
			return
		case <-sess.Done():
			return
		case c, ok = <-st.Controls():
			if !ok {
				return
			}
		}
		var err error
		switch v := c.(type) {
		case agentproto.TerminalResize:
			err = sess.Resize(v.Cols, v.Rows)
		case agentproto.TerminalSignal:
			sig, known := terminalSignals[v.Signal]
			if !known {
				a.log.Warn("terminal_signal with an unknown signal ignored", "stream_id", st.ID(), "signal", v.Signal)
				continue
			}
			err = sess.Signal(sig)
		}
		if err != nil {
			a.log.Debug("terminal control not applied", "stream_id", st.ID(), "err", err)
		}
	}
}
