package hub

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/home-console/client-manager/internal/events"
	"github.com/home-console/client-manager/internal/ratelimit"
	"github.com/home-console/client-manager/pkg/agentproto"
)

// conn is one agent WebSocket. Its fields are set at upgrade and then
// read-only, atomics, safe for concurrent use (msgs), or guarded by mu. It
// is kept small: 100k of them must fit comfortably in memory.
type conn struct {
	hub        *Hub
	ws         *websocket.Conn
	nc         net.Conn // the hijacked socket, cut by Shutdown after its deadline
	agentID    string
	remoteAddr string

	connectedAt  int64        // hub.now() at upgrade
	lastActivity atomic.Int64 // hub.now() at the last inbound message
	ready        atomic.Bool  // hello answered; set under the registry shard lock

	msgs *ratelimit.Bucket // inbound messages (MessageRate, MessageBurst)

	// features is hello.Features and streamsOK whether it lists
	// streams.v1; both set before ready, then read-only.
	features  []string
	streamsOK bool
	// streams is created by the first OpenStream (under mu, unless
	// closing), so an idle connection pays nothing for streams.
	streams atomic.Pointer[streamState]

	mu      sync.Mutex
	queue   [][]byte   // encoded control frames waiting for the writer
	data    []outFrame // stream frames, written after queue is empty
	writing bool       // a writer goroutine is draining the queues
	closing bool
}

// outFrame is a queued stream frame: binary data, or a stream_close text
// frame, which must follow the stream's data queued before it.
type outFrame struct {
	b    []byte
	text bool
}

// session returns the public view of c.
func (c *conn) session() Session {
	return Session{
		AgentID:      c.agentID,
		RemoteAddr:   c.remoteAddr,
		ConnectedAt:  c.hub.wall(c.connectedAt),
		LastActivity: c.hub.wall(c.lastActivity.Load()),
	}
}

// enqueue queues an encoded frame and makes sure a writer is draining the
// queue. It never blocks on the network.
func (c *conn) enqueue(frame []byte) error {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return ErrOffline
	}
	if len(c.queue) >= c.hub.cfg.OutboundQueue {
		c.mu.Unlock()
		c.hub.closeAsync(c, agentproto.CloseSlowConsumer, "outbound queue full: the agent reads too slowly")
		return ErrQueueFull
	}
	c.queue = append(c.queue, frame)
	c.startWriterLocked()
	return nil
}

// enqueueData queues a stream frame behind the control frames. The data
// queue is bounded by the streams' credit windows, not by OutboundQueue.
// It never blocks on the network.
func (c *conn) enqueueData(f outFrame) error {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return ErrOffline
	}
	c.data = append(c.data, f)
	c.startWriterLocked()
	return nil
}

// startWriterLocked starts a writer unless one runs, and unlocks c.mu.
func (c *conn) startWriterLocked() {
	start := !c.writing
	if start {
		c.writing = true
		c.hub.wg.Add(1) // the reader is alive (not closing), so the count is positive
	}
	c.mu.Unlock()
	if start {
		go c.writeLoop()
	}
}

// nextFrame takes the next frame to write: control frames first.
func (c *conn) nextFrame() (frame []byte, typ websocket.MessageType, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.closing || len(c.queue)+len(c.data) == 0:
		c.writing = false
		c.queue, c.data = nil, nil
		return nil, 0, false
	case len(c.queue) > 0:
		frame = c.queue[0]
		c.queue[0] = nil
		c.queue = c.queue[1:]
		return frame, websocket.MessageText, true
	}
	f := c.data[0]
	c.data[0] = outFrame{}
	c.data = c.data[1:]
	if f.text {
		return f.b, websocket.MessageText, true
	}
	return f.b, websocket.MessageBinary, true
}

// writeLoop writes queued frames until the queues are empty, then exits;
// an idle connection has no writer goroutine. A control frame waits at
// most for the one data frame being written.
func (c *conn) writeLoop() {
	defer c.hub.wg.Done()
	for {
		frame, typ, ok := c.nextFrame()
		if !ok {
			return
		}
		if err := c.ws.Write(context.Background(), typ, frame); err != nil {
			if c.beginClose(websocket.StatusAbnormalClosure, "write failed") {
				_ = c.ws.CloseNow()
			}
			c.mu.Lock()
			c.writing = false
			c.mu.Unlock()
			return
		}
	}
}

// beginClose marks c closing, drops its queue, takes it off the registry
// (so the agent is offline at once) and publishes client.disconnected if
// it had said hello. Only the first call does anything and returns true.
func (c *conn) beginClose(code websocket.StatusCode, reason string) bool {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return false
	}
	c.closing = true
	c.queue, c.data = nil, nil
	c.mu.Unlock()

	h := c.hub
	h.reg.remove(c)
	if c.ready.Load() {
		h.bus.Publish(events.AgentDisconnected{AgentID: c.agentID, Code: int(code), Reason: reason, RemoteAddr: c.remoteAddr})
		h.log.Info("agent disconnected", "agent_id", c.agentID, "remote_addr", c.remoteAddr, "code", int(code), "reason", reason)
	}
	return true
}

// run is c's reader goroutine: it reads and handles messages until the
// connection ends, then releases c's resources.
func (c *conn) run() {
	h := c.hub
	defer h.wg.Done()
	code, reason, handshake := c.readLoop()
	first := c.beginClose(code, reason)
	c.endStreams(agentproto.StreamErrorDisconnected, reason)
	if first && handshake {
		_ = c.ws.Close(code, reason)
	}
	_ = c.ws.CloseNow() // waits for a close started elsewhere to finish
	h.open.Add(-1)
	if c.ready.Load() {
		ctx, cancel := h.callCtx()
		if err := h.store.SeenAgent(ctx, c.agentID, time.Now().UTC()); err != nil {
			h.log.Warn("recording agent last-seen failed", "agent_id", c.agentID, "err", err)
		}
		cancel()
	}
}

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// maxPooledBuf keeps rare huge frames from pinning memory in the pool.
const maxPooledBuf = 64 << 10

// readLoop reads frames until the connection fails or a frame breaks the
// protocol. It returns the close code and reason, and whether the hub
// should send them (false when the peer is gone or already closed).
func (c *conn) readLoop() (websocket.StatusCode, string, bool) {
	for {
		typ, r, err := c.ws.Reader(context.Background())
		if err != nil {
			return readFailure(err)
		}
		if typ != websocket.MessageText && !c.streamsOK {
			return agentproto.CloseUnsupported, "binary frames need streams.v1 in hello.features: send JSON text frames", true
		}
		buf := bufPool.Get().(*bytes.Buffer)
		buf.Reset()
		var code websocket.StatusCode
		var reason string
		var stop, send bool
		if typ == websocket.MessageText {
			code, reason, stop, send = c.readMessage(buf, r)
		} else {
			code, reason, stop, send = c.readData(buf, r)
		}
		if buf.Cap() <= maxPooledBuf {
			bufPool.Put(buf)
		}
		if stop {
			return code, reason, send
		}
	}
}

// readFrame reads one message into buf and records the activity.
func (c *conn) readFrame(buf *bytes.Buffer, r io.Reader) (now int64, code websocket.StatusCode, reason string, stop, send bool) {
	if _, err := buf.ReadFrom(r); err != nil {
		if errors.Is(err, websocket.ErrMessageTooBig) {
			return 0, agentproto.CloseTooBig, "message exceeds the maximum size", true, true
		}
		code, reason, send := readFailure(err)
		return 0, code, reason, true, send
	}
	now = c.hub.now()
	c.lastActivity.Store(now)
	return now, 0, "", false, false
}

// readData reads one binary frame into buf and hands it to the streams.
// It runs on the reader: the Mux's work is shallow (a copy).
func (c *conn) readData(buf *bytes.Buffer, r io.Reader) (code websocket.StatusCode, reason string, stop, send bool) {
	now, code, reason, stop, send := c.readFrame(buf, r)
	if stop {
		return code, reason, stop, send
	}
	ss := c.streams.Load()
	if ss == nil {
		return agentproto.ClosePolicy, "binary frame for an unknown stream", true, true
	}
	if !c.allow(ss.msgs, now) {
		return agentproto.CloseRateLimited, "too many stream messages per second", true, true
	}
	if err := ss.mux.HandleData(buf.Bytes()); err != nil {
		return agentproto.ClosePolicy, truncate(err.Error(), maxCloseReason), true, true
	}
	return 0, "", false, true
}

// allow spends a token of b at now.
func (c *conn) allow(b *ratelimit.Bucket, now int64) bool {
	_, ok := b.Allow(c.hub.epoch.Add(time.Duration(now)))
	return ok
}

// readMessage reads one text message into buf and handles it.
func (c *conn) readMessage(buf *bytes.Buffer, r io.Reader) (code websocket.StatusCode, reason string, stop, send bool) {
	now, code, reason, stop, send := c.readFrame(buf, r)
	if stop {
		return code, reason, stop, send
	}
	// Handling (JSON, store and sink calls) needs a deep stack. It runs on
	// a short-lived goroutine so that the reader, parked in Read most of
	// its life, keeps a 4 KiB stack instead of growing to 8 KiB or more
	// for good: that is a third of an idle connection's memory.
	done := make(chan struct{})
	go func() {
		defer close(done)
		code, reason, stop = c.handle(buf.Bytes(), now)
	}()
	<-done
	return code, reason, stop, true
}

// readFailure describes a failed read: the peer closed, or the connection
// broke (or was closed by the hub, which then already recorded why).
func readFailure(err error) (websocket.StatusCode, string, bool) {
	if code := websocket.CloseStatus(err); code != -1 {
		return code, "closed by the agent", false
	}
	return websocket.StatusAbnormalClosure, "connection lost", false
}
