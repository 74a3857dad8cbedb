// Package hub is the agent WebSocket endpoint: it authenticates agents on
// the HTTP upgrade, keeps one connection per agent, enforces the protocol
// limits of pkg/agentproto, watches liveness, and routes command messages
// to a CommandSink (internal/dispatch).
//
// Resource model, designed for 100,000 agents on one node: an idle
// connection costs one goroutine (its reader) and a few hundred bytes of
// state plus the WebSocket library's; a writer goroutine exists only while
// messages are queued for it. There are no per-connection timers: one
// sweeper goroutine checks every connection's last activity each
// SweepInterval and enforces the hello and liveness timeouts, and one
// flusher goroutine writes the agents' heartbeat times to the store in one
// batch each SeenInterval. Streams (streams.v1, see OpenStream) cost an
// idle connection nothing: their state is made by the first OpenStream,
// and their frames share the connection's writer, control frames first.
// Sends never
// block: they enqueue on a bounded per-agent queue, and an agent whose
// queue overflows is disconnected (4004) instead of stalling anyone.
package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/home-console/client-manager/internal/events"
	"github.com/home-console/client-manager/internal/fleet"
	"github.com/home-console/client-manager/internal/origin"
	"github.com/home-console/client-manager/internal/ratelimit"
	"github.com/home-console/client-manager/pkg/agentproto"
)

// Errors returned by Send, checked with errors.Is.
var (
	// ErrOffline means the agent has no connection that completed hello.
	ErrOffline = errors.New("agent offline")
	// ErrQueueFull means the agent's outbound queue overflowed; the agent
	// is being disconnected with agentproto.CloseSlowConsumer.
	ErrQueueFull = errors.New("agent outbound queue full")
)

// Authenticator checks an agent credential (*enroll.Service implements
// it). It returns fleet.ErrCredentialInvalid or fleet.ErrCredentialRevoked
// for bad credentials; any other error is treated as a server failure.
type Authenticator interface {
	Authenticate(ctx context.Context, credential string) (fleet.Agent, error)
}

// CommandSink receives the command messages agents send
// (internal/dispatch implements it). The hub calls it from the agent's
// reader goroutine, one message at a time per agent, with a context
// bounded by Config.CallTimeout; a slow sink slows only that agent.
type CommandSink interface {
	// Connected is called after an agent's hello was answered. running
	// lists the command ids the agent is still executing.
	Connected(ctx context.Context, agentID string, running []string)
	// Accepted reports that the agent acknowledged a command_request.
	Accepted(ctx context.Context, agentID, commandID string)
	// Output hands over a chunk of a running command's output.
	Output(ctx context.Context, agentID string, out agentproto.CommandOutput)
	// Result stores a command's terminal report. The hub answers
	// result_ack when it returns nil, or an error matching
	// fleet.ErrAlreadyFinal (stored before) or fleet.ErrNotFound (nothing
	// to store); on any other error it answers result_not_stored, and the
	// agent keeps the result and re-sends it (or the sink, holding it,
	// has result_ack sent once it is stored).
	Result(ctx context.Context, agentID string, res agentproto.CommandResult) error
}

// Config tunes a Hub. Zero fields take the defaults noted on each.
type Config struct {
	// MaxConnections bounds open agent WebSockets (default 100000); over
	// it, upgrades get 503 with Retry-After. Mind the process's file
	// descriptor limit.
	MaxConnections int
	// MaxMessageBytes is the largest frame read (default 1 MiB); a larger
	// one closes the connection with 1009.
	MaxMessageBytes int64
	// OutboundQueue is the per-agent send queue length (default 256).
	OutboundQueue int
	// MessageRate and MessageBurst bound inbound messages per connection
	// (token bucket; defaults 100/s, burst 200); excess closes with 4005.
	MessageRate  float64
	MessageBurst int
	// ConnectRate and ConnectBurst bound upgrade attempts for the whole hub
	// (token bucket; defaults 500/s, burst 1000), so a reconnect storm
	// gets 429 with Retry-After instead of overloading the store.
	ConnectRate  float64
	ConnectBurst int
	// HelloTimeout is how long a new connection may take to send hello
	// (default 10s); otherwise it is closed with 1008.
	HelloTimeout time.Duration
	// HeartbeatInterval is the heartbeat period told to agents in welcome
	// (default 15s).
	HeartbeatInterval time.Duration
	// LivenessTimeout closes a connection silent for this long with 4003
	// (default 45s). Any inbound message counts as activity.
	LivenessTimeout time.Duration
	// SweepInterval is how often liveness is checked (default 1s), so a
	// vanished peer is offline within LivenessTimeout + SweepInterval.
	SweepInterval time.Duration
	// SeenInterval is how often the last-seen times of heartbeating agents
	// are written to the store, all in one transaction (default 30s).
	// Disconnects are written at once.
	SeenInterval time.Duration
	// MaxOutputBytes is advertised in welcome: the most output per
	// command the server keeps (default 512 KiB). Keep it equal to
	// dispatch.Config.MaxOutputBytes.
	MaxOutputBytes int64
	// CallTimeout bounds each store and CommandSink call made on behalf
	// of a connection (default 10s).
	CallTimeout time.Duration
	// ServerVersion is reported in welcome.
	ServerVersion string
	// StreamWindowBytes is each stream's credit window per direction and
	// StreamChunkBytes the largest payload of one binary frame, told to
	// agents in welcome (defaults agentproto.DefaultStreamWindowBytes,
	// 256 KiB, and agentproto.DefaultStreamChunkBytes, 32 KiB; the chunk
	// is capped at MaxMessageBytes-4).
	StreamWindowBytes int64
	StreamChunkBytes  int
	// MaxStreams bounds the streams open at once on one connection
	// (default 16); OpenStream past it fails with
	// agentstream.ErrTooManyStreams.
	MaxStreams int
	// StreamMessageRate and StreamMessageBurst bound inbound binary frames
	// and stream messages per connection (token bucket; defaults 4000/s,
	// burst 8000), apart from MessageRate; excess closes with 4005.
	StreamMessageRate  float64
	StreamMessageBurst int
	// Origins lists the web pages (browser origins) allowed to open an
	// agent WebSocket besides same-origin ones; the zero value allows
	// none. Requests without an Origin header (agents) are unaffected.
	Origins origin.Policy
}

func (c Config) withDefaults() Config {
	def := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	if c.MaxConnections <= 0 {
		c.MaxConnections = 100000
	}
	if c.MaxMessageBytes <= 0 {
		c.MaxMessageBytes = 1 << 20
	}
	if c.OutboundQueue <= 0 {
		c.OutboundQueue = 256
	}
	if c.MessageRate <= 0 {
		c.MessageRate = 100
	}
	if c.MessageBurst <= 0 {
		c.MessageBurst = 200
	}
	if c.ConnectRate <= 0 {
		c.ConnectRate = 500
	}
	if c.ConnectBurst <= 0 {
		c.ConnectBurst = 1000
	}
	c = c.streamDefaults()
	if c.MaxOutputBytes <= 0 {
		c.MaxOutputBytes = 512 << 10
	}
	def(&c.HelloTimeout, 10*time.Second)
	def(&c.HeartbeatInterval, 15*time.Second)
	def(&c.LivenessTimeout, 45*time.Second)
	def(&c.SweepInterval, time.Second)
	def(&c.SeenInterval, 30*time.Second)
	def(&c.CallTimeout, 10*time.Second)
	return c
}

func (c Config) streamDefaults() Config {
	if c.StreamWindowBytes <= 0 {
		c.StreamWindowBytes = agentproto.DefaultStreamWindowBytes
	}
	if c.StreamChunkBytes <= 0 {
		c.StreamChunkBytes = agentproto.DefaultStreamChunkBytes
	}
	c.StreamChunkBytes = int(min(int64(c.StreamChunkBytes), c.MaxMessageBytes-agentproto.StreamHeaderBytes))
	if c.MaxStreams <= 0 {
		c.MaxStreams = 16
	}
	if c.StreamMessageRate <= 0 {
		c.StreamMessageRate = 4000
	}
	if c.StreamMessageBurst <= 0 {
		c.StreamMessageBurst = 8000
	}
	return c
}

// Session describes an agent's live connection.
type Session struct {
	AgentID      string    `json:"agent_id"`
	RemoteAddr   string    `json:"remote_addr"`
	ConnectedAt  time.Time `json:"connected_at"`
	LastActivity time.Time `json:"last_activity"`
}

// Hub serves agent connections. Its methods are safe for concurrent use.
type Hub struct {
	cfg   Config
	auth  Authenticator
	store fleet.Store
	bus   *events.Bus
	log   *slog.Logger
	sink  atomic.Pointer[sinkRef]

	epoch   time.Time // monotonic base of all per-connection timestamps
	reg     *registry
	open    atomic.Int64 // open WebSockets, including before hello and closing
	connect *ratelimit.Bucket

	mu       sync.RWMutex // guards draining against wg.Add in the handler
	draining bool
	wg       sync.WaitGroup // connection goroutines
	stop     chan struct{}
	swept    chan struct{}
	flushed  chan struct{} // closed when flushLoop returns

	seen seenTimes // heartbeat times not yet written to the store
}

type sinkRef struct{ CommandSink }

// New returns a Hub and starts its liveness sweeper and last-seen flusher;
// Shutdown stops them.
func New(cfg Config, auth Authenticator, store fleet.Store, bus *events.Bus, log *slog.Logger) *Hub {
	cfg = cfg.withDefaults()
	h := &Hub{
		cfg:     cfg,
		auth:    auth,
		store:   store,
		bus:     bus,
		log:     log,
		epoch:   time.Now(),
		reg:     newRegistry(),
		connect: ratelimit.NewBucket(cfg.ConnectRate, cfg.ConnectBurst),
		stop:    make(chan struct{}),
		swept:   make(chan struct{}),
		flushed: make(chan struct{}),
		seen:    seenTimes{at: make(map[string]time.Time)},
	}
	go h.sweep()
	go h.flushLoop()
	return h
}

// SetCommandSink sets where command messages go. Call it before serving;
// until then such messages get an error reply.
func (h *Hub) SetCommandSink(s CommandSink) {
	h.sink.Store(&sinkRef{s})
}

// Online reports whether the agent has a connection that completed hello.
func (h *Hub) Online(agentID string) bool {
	c := h.reg.get(agentID)
	return c != nil && c.ready.Load()
}

// Count returns the number of online agents.
func (h *Hub) Count() int { return int(h.reg.online.Load()) }

// Connections returns the number of open WebSockets, including ones that
// have not sent hello yet and ones being closed.
func (h *Hub) Connections() int { return int(h.open.Load()) }

// Session returns the live session of an agent.
func (h *Hub) Session(agentID string) (Session, bool) {
	c := h.reg.get(agentID)
	if c == nil || !c.ready.Load() {
		return Session{}, false
	}
	return c.session(), true
}

// Sessions returns every live session, in no particular order.
func (h *Hub) Sessions() []Session {
	conns := h.reg.collect(nil, func(c *conn) bool { return c.ready.Load() })
	out := make([]Session, len(conns))
	for i, c := range conns {
		out[i] = c.session()
	}
	return out
}

// Send queues env for the agent and returns at once. It returns
// ErrOffline if the agent is not connected, ErrQueueFull if its queue is
// full (the agent is then disconnected with 4004), or an encoding error.
// Delivery is not confirmed: a queued message is lost if the connection
// drops.
func (h *Hub) Send(agentID string, env agentproto.Envelope) error {
	c := h.reg.get(agentID)
	if c == nil || !c.ready.Load() {
		return ErrOffline
	}
	b, err := json.Marshal(env)
	if err != nil {
		return fmt.Errorf("hub: encode %s: %w", env.Type, err)
	}
	return c.enqueue(b)
}

// Disconnect closes the agent's connection at once with code and reason
// (at most 123 bytes), e.g. agentproto.CloseRevoked after revoking its
// credential or agentproto.CloseDeleted when an operator removes it. The
// agent is offline when Disconnect returns; the close handshake finishes
// in the background. It reports whether there was a connection.
func (h *Hub) Disconnect(agentID string, code websocket.StatusCode, reason string) bool {
	c := h.reg.get(agentID)
	if c == nil {
		return false
	}
	return h.closeAsync(c, code, truncate(reason, maxCloseReason))
}

// Shutdown refuses new connections, ends every stream with code
// agentproto.StreamErrorShutdown, closes every connection with 1001
// "server shutting down" and waits for them to finish the close handshake
// until ctx ends; then it cuts the remaining ones and returns ctx.Err().
// It also stops the sweeper and the flusher, and writes the pending
// heartbeat times to the store once before returning. Calling it again
// waits again.
func (h *Hub) Shutdown(ctx context.Context) error {
	h.mu.Lock()
	first := !h.draining
	h.draining = true
	h.mu.Unlock()
	if first {
		close(h.stop)
	}
	<-h.swept
	<-h.flushed
	// Flush after the connections are done, so no heartbeat is left behind.
	defer h.flushSeen()
	conns := h.reg.collect(nil, nil)
	for _, c := range conns {
		c.endStreams(agentproto.StreamErrorShutdown, "server shutting down")
		h.closeAsync(c, websocket.StatusGoingAway, "server shutting down")
	}
	done := make(chan struct{})
	go func() {
		h.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	for _, c := range conns {
		_ = c.nc.Close()
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		h.log.Warn("agent connections still closing after shutdown deadline")
	}
	return ctx.Err()
}

// closeAsync starts closing c with code and reason unless it is already
// closing: c is unregistered at once, and the close handshake runs in the
// background. It reports whether this call started the close.
func (h *Hub) closeAsync(c *conn, code websocket.StatusCode, reason string) bool {
	if !c.beginClose(code, reason) {
		return false
	}
	// c's reader is still running (it calls beginClose itself before it
	// exits), so the WaitGroup counter is positive here.
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		c.endStreams(agentproto.StreamErrorDisconnected, reason)
		_ = c.ws.Close(code, reason)
	}()
	return true
}

// now returns monotonic nanoseconds since the hub started.
func (h *Hub) now() int64 { return int64(time.Since(h.epoch)) }

func (h *Hub) wall(mono int64) time.Time {
	return h.epoch.Add(time.Duration(mono)).UTC()
}

// sweep enforces the hello and liveness timeouts for every connection.
func (h *Hub) sweep() {
	defer close(h.swept)
	t := time.NewTicker(h.cfg.SweepInterval)
	defer t.Stop()
	var victims []*conn
	for {
		select {
		case <-h.stop:
			return
		case <-t.C:
		}
		now := h.now()
		helloBefore := now - int64(h.cfg.HelloTimeout)
		silentBefore := now - int64(h.cfg.LivenessTimeout)
		victims = h.reg.collect(victims[:0], func(c *conn) bool {
			if c.ready.Load() {
				return c.lastActivity.Load() < silentBefore
			}
			return c.connectedAt < helloBefore
		})
		for i, c := range victims {
			if c.ready.Load() {
				h.closeAsync(c, agentproto.CloseLiveness, "no heartbeat within the liveness timeout")
			} else {
				h.closeAsync(c, agentproto.ClosePolicy, "no hello within the hello timeout")
			}
			victims[i] = nil
		}
	}
}

func (h *Hub) callCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), h.cfg.CallTimeout)
}

const maxCloseReason = 123

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && n < len(s) && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}

// DefaultConfig returns the defaults noted on each field of Config.
func DefaultConfig() Config { return Config{}.withDefaults() }
