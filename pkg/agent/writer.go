package agent

import (
	"context"
	"errors"
	"time"

	"github.com/coder/websocket"

	"github.com/home-console/client-manager/pkg/agentproto"
)

// writeLoop is the session's only writer: it first re-sends unacked, the
// results the server has not acknowledged, then writes queued messages,
// heartbeats and stream frames until the session ends. Every message other
// than a stream's data goes ahead of the data frames waiting: a frame of
// data is written only when no other message is queued. When ctx is done it closes the
// connection with status 1000; when a write fails or the server has been
// silent past its liveness timeout it drops the connection.
func (s *session) writeLoop(ctx context.Context, unacked []agentproto.CommandResult) {
	var tick <-chan time.Time
	if g := s.a.cfg.Heartbeats; g != nil {
		m := g.add(s.heartbeat, s.beat)
		defer g.remove(m)
	} else {
		t := time.NewTicker(s.heartbeat)
		defer t.Stop()
		tick = t.C
	}
	err := s.resend(unacked)
	for err == nil {
		select {
		case <-ctx.Done():
			s.abortStreams()
			s.conn.Close(websocket.StatusNormalClosure, "agent stopping")
			return
		case <-s.done:
			return
		case b := <-s.out:
			err = s.write(b)
		case <-tick:
			err = s.onBeat()
		case <-s.beat:
			err = s.onBeat()
		case <-s.streams.ready():
			err = s.writeStreamFrame()
		}
	}
	s.a.log.Warn("dropping the connection", "err", err)
	s.conn.CloseNow()
}

// shutdownFlush bounds how long a stopping agent spends writing the
// stream frames queued before its streams' aborts.
const shutdownFlush = 2 * time.Second

// abortStreams aborts every stream with code shutdown and writes what is
// queued, the aborts included, for at most shutdownFlush, so that the
// server learns why its streams end.
func (s *session) abortStreams() {
	if s.mux == nil {
		return
	}
	s.mux.Abort(agentproto.StreamErrorShutdown, "agent stopping")
	deadline := time.Now().Add(shutdownFlush)
	for time.Now().Before(deadline) {
		f, ok := s.streams.pop()
		if !ok {
			return
		}
		if s.writeQueued(f) != nil {
			return
		}
	}
}

// writeQueued writes a frame of the stream queue as the kind it is.
func (s *session) writeQueued(f queuedFrame) error {
	if f.text {
		return s.write(f.b)
	}
	return s.writeFrame(websocket.MessageBinary, f.b)
}

// resend writes results directly, ahead of the queue.
func (s *session) resend(results []agentproto.CommandResult) error {
	for _, res := range results {
		b, err := s.encodeResult(res)
		if err != nil {
			s.a.log.Error("dropping result", "command_id", res.CommandID, "err", err)
			continue
		}
		if err := s.write(b); err != nil {
			return err
		}
	}
	return nil
}

func (s *session) write(b []byte) error {
	return s.writeFrame(websocket.MessageText, b)
}

func (s *session) writeFrame(typ websocket.MessageType, b []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	defer cancel()
	return s.conn.Write(ctx, typ, b)
}

// writeStreamFrame writes one waiting frame: a queued message first (so a
// command's messages never wait behind a session's data), else the next
// stream control message, else the next frame of the data list.
func (s *session) writeStreamFrame() error {
	select {
	case b := <-s.out:
		return s.write(b)
	default:
	}
	f, ok := s.streams.pop()
	if !ok {
		return nil
	}
	return s.writeQueued(f)
}

// onBeat runs at every heartbeat: it drops the connection if the server
// has been silent longer than its liveness timeout (every heartbeat is
// answered, so the server or the path to it is gone), sends a heartbeat,
// and sends again the results still unacknowledged a liveness timeout after
// they were last sent (the server may have failed to store them).
func (s *session) onBeat() error {
	now := time.Now()
	if now.Sub(time.Unix(0, s.lastRecv.Load())) > s.liveness {
		return errServerSilent
	}
	b, err := s.encode(agentproto.TypeHeartbeat, agentproto.Heartbeat{Time: now.UTC()})
	if err != nil {
		return err
	}
	if err := s.write(b); err != nil {
		return err
	}
	return s.resend(s.a.unackedResults(now.Add(-s.liveness)))
}

// encodeResult encodes a command_result within the server's frame size
// limit, cutting the output (and setting Truncated) if it does not fit.
func (s *session) encodeResult(res agentproto.CommandResult) ([]byte, error) {
	for {
		b, err := s.encode(agentproto.TypeCommandResult, res)
		if err != nil || int64(len(b)) <= s.maxMessage {
			return b, err
		}
		excess := int(int64(len(b)) - s.maxMessage)
		if len(res.Stdout)+len(res.Stderr) == 0 {
			return nil, errors.New("result does not fit the server's message size limit")
		}
		res.Truncated = true
		if len(res.Stdout) >= len(res.Stderr) {
			res.Stdout = cutString(res.Stdout, excess)
		} else {
			res.Stderr = cutString(res.Stderr, excess)
		}
	}
}

// cutString removes at least n bytes from the end of s without splitting a
// UTF-8 sequence.
func cutString(s string, n int) string {
	b := []byte(s[:max(len(s)-n, 0)])
	return string(b[:completeUTF8(b)])
}
