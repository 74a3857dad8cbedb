package hub

import (
	"errors"
	"time"

	"github.com/coder/websocket"

	"github.com/home-console/client-manager/internal/events"
	"github.com/home-console/client-manager/internal/fleet"
	"github.com/home-console/client-manager/pkg/agentproto"
)

// handle processes one inbound frame. It returns stop=true with a close
// code and reason when the frame ends the connection.
//
// Forward compatibility: a well-formed envelope of a type this server does
// not know is answered with error{code:"unknown_type"} and the connection
// stays up, so newer agents can probe for features. Malformed data of a
// known type is answered with error{code:"invalid_data"}.
func (c *conn) handle(b []byte, now int64) (websocket.StatusCode, string, bool) {
	f := decodeFrame(b)
	if f.class == frameMalformed {
		return agentproto.CloseInvalidData, f.problem, true
	}
	if isStreamMessage(f.env.Type) && c.ready.Load() {
		return c.onStream(f, now)
	}
	if !c.allow(c.msgs, now) {
		return agentproto.CloseRateLimited, "too many messages per second", true
	}
	if !c.ready.Load() {
		switch {
		case f.env.Type != agentproto.TypeHello:
			return agentproto.ClosePolicy, "the first message must be hello", true
		case f.class != frameOK:
			return agentproto.CloseInvalidData, "hello data is not valid", true
		}
		return c.onHello(f.env, f.data.(agentproto.Hello), now)
	}
	switch {
	case f.env.Type == agentproto.TypeHello:
		c.replyError(f.env.ID, "unexpected_hello", "hello was already received on this connection")
	case f.env.Type == agentproto.TypeError:
		e, _ := f.data.(agentproto.Error)
		c.hub.log.Debug("agent reported an error", "agent_id", c.agentID, "code", e.Code, "message", e.Message)
	case f.class == frameUnknownType:
		c.replyError(f.env.ID, "unknown_type", f.problem)
	case f.class == frameInvalidData:
		c.replyError(f.env.ID, "invalid_data", f.problem)
	default:
		c.dispatch(f, now)
	}
	return 0, "", false
}

// dispatch acts on a valid message of a connection past hello.
func (c *conn) dispatch(f frame, now int64) {
	env := f.env
	switch data := f.data.(type) {
	case nil: // heartbeat, whose data is ignored
		c.onHeartbeat(env, now)
	case agentproto.CommandRef:
		c.withSink(env, func(s CommandSink) {
			ctx, cancel := c.hub.callCtx()
			defer cancel()
			s.Accepted(ctx, c.agentID, data.CommandID)
		})
	case agentproto.CommandOutput:
		c.withSink(env, func(s CommandSink) {
			ctx, cancel := c.hub.callCtx()
			defer cancel()
			s.Output(ctx, c.agentID, data)
		})
	case agentproto.CommandResult:
		c.withSink(env, func(s CommandSink) { c.onResult(s, env, data) })
	}
}

// onHello records the agent's facts, makes the connection live and
// answers welcome, then lets the sink (re)deliver commands. hello's labels
// only add to the enrollment labels: the store keeps every label the
// operator gave at enrollment (fleet.AgentFacts).
func (c *conn) onHello(env agentproto.Envelope, hello agentproto.Hello, now int64) (websocket.StatusCode, string, bool) {
	h := c.hub
	c.features, c.streamsOK = internFeatures(hello.Features)
	facts := fleet.AgentFacts{
		Hostname: hello.Hostname, OS: hello.OS, Arch: hello.Arch, Version: hello.Version,
		Labels: hello.Labels, Allowed: hello.Allowed,
	}
	ctx, cancel := h.callCtx()
	defer cancel()
	if err := h.store.TouchAgent(ctx, c.agentID, facts, c.remoteAddr, time.Now().UTC()); err != nil {
		h.log.Error("recording agent connection failed", "agent_id", c.agentID, "err", err)
		if errors.Is(err, fleet.ErrStorageUnavailable) {
			return agentproto.CloseTryAgainLater, "the server's store refuses writes; reconnect later", true
		}
		return agentproto.CloseInternal, "server error, retry later", true
	}
	if !h.reg.markReady(c) {
		// A newer connection replaced this one meanwhile; it is closing.
		return agentproto.CloseReplaced, "replaced by a newer connection", false
	}
	h.bus.Publish(events.AgentConnected{AgentID: c.agentID, Hostname: hello.Hostname, RemoteAddr: c.remoteAddr, Version: hello.Version})
	h.log.Info("agent connected", "agent_id", c.agentID, "remote_addr", c.remoteAddr, "version", hello.Version)
	c.reply(agentproto.TypeWelcome, env.ID, agentproto.Welcome{
		AgentID:             c.agentID,
		HeartbeatIntervalMS: h.cfg.HeartbeatInterval.Milliseconds(),
		LivenessTimeoutMS:   h.cfg.LivenessTimeout.Milliseconds(),
		MaxMessageBytes:     h.cfg.MaxMessageBytes,
		MaxOutputBytes:      h.cfg.MaxOutputBytes,
		ServerVersion:       h.cfg.ServerVersion,
		Features:            serverFeatures,
		StreamWindowBytes:   h.cfg.StreamWindowBytes,
		StreamChunkBytes:    int64(h.cfg.StreamChunkBytes),
	})
	if ref := h.sink.Load(); ref != nil {
		ref.Connected(ctx, c.agentID, hello.Running)
	}
	return 0, "", false
}

// onHeartbeat answers heartbeat_ack and records the last-seen time for
// the hub's next batched write (see Hub.flushSeen).
func (c *conn) onHeartbeat(env agentproto.Envelope, now int64) {
	c.reply(agentproto.TypeHeartbeatAck, env.ID, nil)
	c.hub.seen.record(c.agentID, c.hub.wall(now))
}

// onResult hands a result to the sink and acknowledges it once it is
// stored (or was stored before, or there is nothing to store). A result
// not stored is answered result_not_stored: the agent keeps it (the sink
// may hold it and have result_ack sent once it is stored).
func (c *conn) onResult(s CommandSink, env agentproto.Envelope, res agentproto.CommandResult) {
	ctx, cancel := c.hub.callCtx()
	defer cancel()
	err := s.Result(ctx, c.agentID, res)
	if err != nil && !errors.Is(err, fleet.ErrAlreadyFinal) && !errors.Is(err, fleet.ErrNotFound) {
		c.hub.log.Error("storing command result failed", "agent_id", c.agentID, "command_id", res.CommandID, "err", err)
		c.replyError(env.ID, "result_not_stored",
			"the result is not stored yet; keep it: result_ack follows once it is stored, or send it again later")
		return
	}
	if errors.Is(err, fleet.ErrNotFound) {
		c.hub.log.Warn("result for an unknown command acknowledged", "agent_id", c.agentID, "command_id", res.CommandID)
	}
	c.reply(agentproto.TypeResultAck, env.ID, agentproto.CommandRef{CommandID: res.CommandID})
}

func (c *conn) withSink(env agentproto.Envelope, fn func(CommandSink)) {
	ref := c.hub.sink.Load()
	if ref == nil {
		c.replyError(env.ID, "unavailable", "commands are not available yet; retry later")
		return
	}
	fn(ref.CommandSink)
}

// reply queues a message for the agent; a failure means the connection
// is closing, which the reader notices on its next read.
func (c *conn) reply(typ, ref string, data any) {
	b, err := encodeEnvelope(typ, ref, data)
	if err != nil {
		c.hub.log.Error("encoding a reply failed", "type", typ, "err", err)
		return
	}
	_ = c.enqueue(b)
}

func (c *conn) replyError(ref, code, message string) {
	c.reply(agentproto.TypeError, "", agentproto.Error{Code: code, Message: message, Ref: ref})
}
