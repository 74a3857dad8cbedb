package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/coder/websocket"

	"github.com/home-console/client-manager/internal/ratelimit"
	"github.com/home-console/client-manager/pkg/agentproto"
	"github.com/home-console/client-manager/pkg/agentstream"
)

// ErrStreamsUnsupported is returned by OpenStream for an agent whose hello
// did not list agentproto.FeatureStreams.
var ErrStreamsUnsupported = errors.New("agent does not support streams")

// serverFeatures is what the hub lists in every welcome.
var serverFeatures = []string{agentproto.FeatureStreams}

// knownFeatures are kept as the constants, not as copies decoded from
// each hello.
var knownFeatures = []string{agentproto.FeatureStreams, agentproto.FeatureTerminal, agentproto.FeatureFiles}

// internFeatures returns hello's features with the known ones shared, and
// whether they include streams.v1.
func internFeatures(in []string) ([]string, bool) {
	streams := false
	for i, f := range in {
		if k := slices.Index(knownFeatures, f); k >= 0 {
			in[i] = knownFeatures[k]
		}
		streams = streams || f == agentproto.FeatureStreams
	}
	return in, streams
}

// streamState is a connection's streams, made by the first OpenStream.
type streamState struct {
	mux  *agentstream.Mux
	msgs *ratelimit.Bucket // inbound stream messages and binary frames
}

// streamState returns c's streams, creating them at first use; ErrOffline
// once c is closing.
func (c *conn) streamState() (*streamState, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return nil, ErrOffline
	}
	if ss := c.streams.Load(); ss != nil {
		return ss, nil
	}
	cfg := c.hub.cfg
	ss := &streamState{
		mux: agentstream.New(streamTransport{c}, agentstream.Config{
			Window: cfg.StreamWindowBytes, Chunk: cfg.StreamChunkBytes, MaxStreams: cfg.MaxStreams,
		}),
		msgs: ratelimit.NewBucket(cfg.StreamMessageRate, cfg.StreamMessageBurst),
	}
	c.streams.Store(ss)
	return ss, nil
}

// endStreams ends c's streams, if any, with code (Mux.Close: nothing is
// sent). It must not run under c.mu or inside the Mux's transport.
func (c *conn) endStreams(code, reason string) {
	if ss := c.streams.Load(); ss != nil {
		ss.mux.Close(code, reason)
	}
}

// onStream hands a stream message of a connection past hello to its Mux.
// Everything wrong with it closes the connection with 1008 (4005 over
// StreamMessageRate): the stream's state would be lost otherwise.
func (c *conn) onStream(f frame, now int64) (websocket.StatusCode, string, bool) {
	ss := c.streams.Load()
	switch {
	case !c.streamsOK:
		return agentproto.ClosePolicy, f.env.Type + " needs streams.v1 in hello.features", true
	case ss == nil:
		return agentproto.ClosePolicy, f.env.Type + " for an unknown stream", true
	case !c.allow(ss.msgs, now):
		return agentproto.CloseRateLimited, "too many stream messages per second", true
	case f.class != frameOK:
		return agentproto.ClosePolicy, truncate(f.problem, maxCloseReason), true
	}
	if err := ss.mux.Handle(f.data); err != nil {
		return agentproto.ClosePolicy, truncate(err.Error(), maxCloseReason), true
	}
	return 0, "", false
}

// streamTransport queues a Mux's frames on its connection.
type streamTransport struct{ c *conn }

// SendControl implements agentstream.Transport: stream_close goes behind
// the queued data, everything else ahead of it.
func (t streamTransport) SendControl(typ string, data any) error {
	b, err := encodeEnvelope(typ, "", data)
	if err != nil {
		return err
	}
	if typ == agentproto.TypeStreamClose {
		return t.c.enqueueData(outFrame{b: b, text: true})
	}
	return t.c.enqueue(b)
}

// SendData implements agentstream.Transport.
func (t streamTransport) SendData(frame []byte) error {
	return t.c.enqueueData(outFrame{b: frame})
}

// encodeEnvelope encodes a message with data (nil: none).
func encodeEnvelope(typ, id string, data any) ([]byte, error) {
	env := agentproto.Envelope{Type: typ, ID: id}
	if data != nil {
		raw, err := json.Marshal(data)
		if err != nil {
			return nil, fmt.Errorf("hub: encode %s: %w", typ, err)
		}
		env.Data = raw
	}
	b, err := json.Marshal(env)
	if err != nil {
		return nil, fmt.Errorf("hub: encode %s: %w", typ, err)
	}
	return b, nil
}

// OpenStream opens a stream to the agent (agentstream.Mux.Open): it sends
// stream_open and waits for stream_opened, or the agent's refusal (a
// *agentstream.CloseError with its code), or ctx's end (the stream is then
// aborted with code cancelled and ctx.Err() returned). It returns
// ErrOffline if the agent is not connected (or its connection ends before
// the stream could be opened), ErrStreamsUnsupported if its hello did not
// list streams.v1, agentstream.ErrTooManyStreams over Config.MaxStreams.
// The stream ends with a *agentstream.CloseError of code disconnected when
// the connection ends, or shutdown when the hub shuts down.
func (h *Hub) OpenStream(ctx context.Context, agentID string, open agentproto.StreamOpen) (*agentstream.Stream, agentproto.StreamOpened, error) {
	c := h.reg.get(agentID)
	if c == nil || !c.ready.Load() {
		return nil, agentproto.StreamOpened{}, ErrOffline
	}
	if !c.streamsOK {
		return nil, agentproto.StreamOpened{}, ErrStreamsUnsupported
	}
	ss, err := c.streamState()
	if err != nil {
		return nil, agentproto.StreamOpened{}, err
	}
	st, opened, err := ss.mux.Open(ctx, open)
	if errors.Is(err, agentstream.ErrClosed) {
		return nil, agentproto.StreamOpened{}, ErrOffline
	}
	return st, opened, err
}

// Features returns the agent's hello.Features while it is online (false
// otherwise).
func (h *Hub) Features(agentID string) ([]string, bool) {
	c := h.reg.get(agentID)
	if c == nil || !c.ready.Load() {
		return nil, false
	}
	return slices.Clone(c.features), true
}
