package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/home-console/client-manager/pkg/agentproto"
	"github.com/home-console/client-manager/pkg/agentstream"
)

// maxAgentStreams bounds the streams open at once on one connection, as
// the server's default does; the terminal and files policies bound each
// kind further, with their own codes.
const maxAgentStreams = 16

// maxCloseReason is the longest close reason a WebSocket close frame holds.
const maxCloseReason = 123

// streamTransport sends a Mux's frames through the session's writer: its
// control messages behind the queued command messages, its data frames
// behind both, and each stream_close behind the data frames queued before
// it.
type streamTransport struct{ s *session }

// SendControl implements agentstream.Transport.
func (t streamTransport) SendControl(typ string, data any) error {
	b, err := t.s.encode(typ, data)
	if err != nil {
		return err
	}
	return t.s.streams.push(queuedFrame{b: b, text: true}, typ != agentproto.TypeStreamClose)
}

// SendData implements agentstream.Transport.
func (t streamTransport) SendData(frame []byte) error {
	return t.s.streams.push(queuedFrame{b: frame}, false)
}

// startStreams gives the session a Mux when the server's welcome lists
// streams.
func (s *session) startStreams(w agentproto.Welcome) {
	if !slices.Contains(w.Features, agentproto.FeatureStreams) {
		return
	}
	s.mux = agentstream.New(streamTransport{s}, agentstream.Config{
		Window: w.StreamWindowBytes, Chunk: int(w.StreamChunkBytes), MaxStreams: maxAgentStreams,
	})
}

// stopStreams ends the session's streams when the connection ended.
func (s *session) stopStreams(cause error) {
	if s.mux != nil {
		msg := "connection ended"
		if cause != nil {
			msg = cause.Error()
		}
		s.mux.Close(agentproto.StreamErrorDisconnected, msg)
	}
	s.streams.close()
}

// handleBinary takes one binary frame. Without streams it is answered with
// an error message; with streams a frame that breaks the rules is a
// protocol violation, returned.
func (s *session) handleBinary(frame []byte) error {
	if s.mux == nil {
		s.sendError("invalid_message", "binary frames are not part of the protocol", "")
		return nil
	}
	if err := s.mux.HandleData(frame); err != nil {
		return fmt.Errorf("stream data: %w", err)
	}
	return nil
}

// dispatchStream handles a stream message; an error is a protocol
// violation. Without streams the message is ignored like any unknown type.
func (s *session) dispatchStream(env agentproto.Envelope) error {
	if s.mux == nil {
		s.a.log.Debug("ignoring a stream message: streams not negotiated", "type", env.Type)
		return nil
	}
	var msg any
	var err error
	switch env.Type {
	case agentproto.TypeStreamOpen:
		var open agentproto.StreamOpen
		if err := decodeStream(env, &open); err != nil {
			return err
		}
		s.a.acceptStream(s, open)
		return nil
	case agentproto.TypeStreamOpened:
		msg, err = decodeValue[agentproto.StreamOpened](env)
	case agentproto.TypeStreamCredit:
		msg, err = decodeValue[agentproto.StreamCredit](env)
	case agentproto.TypeStreamClose:
		msg, err = decodeValue[agentproto.StreamClose](env)
	case agentproto.TypeTerminalResize:
		msg, err = decodeValue[agentproto.TerminalResize](env)
	case agentproto.TypeTerminalSignal:
		msg, err = decodeValue[agentproto.TerminalSignal](env)
	}
	if err != nil {
		return err
	}
	if err := s.mux.Handle(msg); err != nil {
		return fmt.Errorf("%s: %w", env.Type, err)
	}
	return nil
}

func decodeValue[T any](env agentproto.Envelope) (T, error) {
	var v T
	err := decodeStream(env, &v)
	return v, err
}

func decodeStream(env agentproto.Envelope, v any) error {
	if err := json.Unmarshal(env.Data, v); err != nil {
		return fmt.Errorf("invalid %s: %w", env.Type, err)
	}
	return nil
}

// isStreamMessage reports whether typ is one of the stream messages.
func isStreamMessage(typ string) bool {
	switch typ {
	case agentproto.TypeStreamOpen, agentproto.TypeStreamOpened, agentproto.TypeStreamCredit,
		agentproto.TypeStreamClose, agentproto.TypeTerminalResize, agentproto.TypeTerminalSignal:
		return true
	}
	return false
}

// closeReason fits err's text into a close frame.
func closeReason(err error) string {
	r := err.Error()
	if len(r) > maxCloseReason {
		r = cutString(r, len(r)-maxCloseReason)
	}
	return r
}

// acceptStream registers an inbound stream and serves it in a goroutine of
// its own. A stream the Mux refuses has been answered already.
func (a *Agent) acceptStream(s *session, open agentproto.StreamOpen) {
	st, err := s.mux.Accept(open)
	if err != nil {
		a.log.Warn("stream refused", "stream_id", open.StreamID, "kind", open.Kind, "err", err)
		return
	}
	a.streamWG.Add(1)
	go func() {
		defer a.streamWG.Done()
		ctx, cancel := streamContext(a.cmdCtx, st)
		defer cancel()
		a.serveStream(ctx, st)
	}()
}

// streamContext is a context cancelled when the stream is over.
func streamContext(parent context.Context, st *agentstream.Stream) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(parent)
	go func() {
		select {
		case <-st.Done():
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// serveStream runs one stream to its end, by kind.
func (a *Agent) serveStream(ctx context.Context, st *agentstream.Stream) {
	a.log.Info("stream opened", "stream_id", st.ID(), "kind", st.Kind())
	switch st.Kind() {
	case agentproto.StreamTerminal:
		a.serveTerminal(ctx, st)
	case agentproto.StreamFileRead, agentproto.StreamFileWrite, agentproto.StreamFileStat, agentproto.StreamFileList:
		a.serveFiles(ctx, st)
	default:
		_ = st.Abort(agentproto.StreamErrorUnknownKind, fmt.Sprintf("unknown stream kind %q", st.Kind()))
	}
	a.log.Info("stream ended", "stream_id", st.ID(), "kind", st.Kind(), "bytes_in", st.BytesIn(), "bytes_out", st.BytesOut())
}

// coded is an error of the terminal and files packages.
type coded interface{ Code() string }

// refuse aborts st for err, with err's code, or fallback for an error
// without one.
func refuse(st *agentstream.Stream, err error, fallback string) {
	c := agentproto.StreamClose{Code: fallback, Message: err.Error()}
	var ce coded
	if errors.As(err, &ce) {
		c.Code = ce.Code()
	}
	_ = st.AbortWith(c)
}

// pump copies src to dst until src fails (io.EOF included: readErr) or
// dst does (writeErr).
func pump(dst io.Writer, src io.Reader, buf []byte) (n int64, readErr, writeErr error) {
	for {
		m, err := src.Read(buf)
		if m > 0 {
			w, werr := dst.Write(buf[:m])
			n += int64(w)
			if werr != nil {
				return n, nil, werr
			}
		}
		if err != nil {
			return n, err, nil
		}
	}
}
