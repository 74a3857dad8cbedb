package cmservice

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/gin-gonic/gin"

	"github.com/home-console/client-manager/internal/access"
	"github.com/home-console/client-manager/internal/api"
	"github.com/home-console/client-manager/internal/connlimit"
	"github.com/home-console/client-manager/internal/dispatch"
	"github.com/home-console/client-manager/internal/enroll"
	"github.com/home-console/client-manager/internal/events"
	"github.com/home-console/client-manager/internal/hub"
	"github.com/home-console/client-manager/internal/metrics"
	"github.com/home-console/client-manager/internal/origin"
	"github.com/home-console/client-manager/internal/sessions"
	"github.com/home-console/client-manager/internal/sqlite"
	"github.com/home-console/client-manager/internal/version"
)

// StoreFile is the SQLite database's name inside the data directory.
const StoreFile = "client-manager.db"

// app is the set of components a started Service runs.
type app struct {
	store    *sqlite.Store
	bus      *events.Bus
	enroll   *enroll.Service
	hub      *hub.Hub
	dispatch *dispatch.Service
	tokens   *access.StoreTokens
	metrics  *metrics.Registry
	origins  origin.Policy
	api      *api.Server // set by routes
	sessions *sessions.Manager
	log      *slog.Logger

	bgCtx  context.Context // ends at close
	cancel context.CancelFunc
	bg     sync.WaitGroup
}

// background runs fn with the app's background context until close.
func (a *app) background(fn func(ctx context.Context)) {
	a.bg.Go(func() { fn(a.bgCtx) })
}

// openApp opens the store and wires the components; background loops run
// until close.
func openApp(ctx context.Context, cfg Config, log *slog.Logger) (*app, error) {
	origins, err := origin.New(cfg.AllowedOrigins)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	store, err := sqlite.Open(ctx, filepath.Join(cfg.DataDir, StoreFile))
	if err != nil {
		return nil, err
	}
	a := &app{store: store, bus: events.New(), metrics: metrics.New(), origins: origins, log: log}
	a.tokens = &access.StoreTokens{Store: store}
	enrollOpts := cfg.Enroll
	enrollOpts.Origins = origins
	a.enroll = enroll.New(store, a.bus, log, enrollOpts)
	hubCfg := cfg.Hub
	hubCfg.ServerVersion = version.Get().Version
	hubCfg.MaxOutputBytes = int64(cfg.Dispatch.MaxOutputBytes)
	hubCfg.Origins = origins
	a.hub = hub.New(hubCfg, a.enroll, store, a.bus, log)
	a.dispatch = dispatch.New(store, a.hub, a.bus, log, cfg.Dispatch)
	a.hub.SetCommandSink(a.dispatch)

	path, err := a.enroll.EnsureBootstrapToken(ctx, cfg.DataDir)
	if err != nil {
		_ = store.Close()
		return nil, err
	}
	log.Info("agents can enroll with the bootstrap token", "file", path)
	if err := a.dispatch.Recover(ctx); err != nil {
		_ = store.Close()
		return nil, err
	}

	a.metrics.Gauge("cm_agents_connected", "Agents with an open WebSocket.", func() float64 { return float64(a.hub.Count()) })
	a.metrics.Gauge("cm_websocket_connections", "Open agent WebSockets, handshaking ones included.", func() float64 { return float64(a.hub.Connections()) })
	a.metrics.Gauge("cm_results_held", "Command results held in memory until the store takes them.", func() float64 { return float64(a.dispatch.Held()) })
	a.metrics.Gauge("cm_store_writable", "1 while the store takes writes, 0 while it refuses them (disk full, I/O error).", func() float64 {
		if a.store.Writable() != nil {
			return 0
		}
		return 1
	})
	a.bgCtx, a.cancel = context.WithCancel(context.Background())
	if err := openSessions(cfg, a.hub, a); err != nil {
		a.cancel()
		_ = store.Close()
		return nil, err
	}
	a.background(a.dispatch.Run)
	a.background(func(ctx context.Context) { a.metrics.Follow(ctx, a.bus) })
	a.background(a.store.Watch)
	return a, nil
}

// countConnections exposes the port's connection counts as metrics.
func (a *app) countConnections(l *connlimit.Listener) {
	a.metrics.Gauge("cm_open_connections", "Open connections of the port, of every kind.", func() float64 { return float64(l.Stats().Open) })
	const shedHelp = "Connections closed to make room (limit: at the connection limit; no_descriptors: out of file descriptors)."
	a.metrics.CounterFunc("cm_connections_shed_total", shedHelp, func() float64 { return float64(l.Stats().ShedLimit) },
		"reason", string(connlimit.ReasonLimit))
	a.metrics.CounterFunc("cm_connections_shed_total", shedHelp, func() float64 { return float64(l.Stats().ShedNoDescriptors) },
		"reason", string(connlimit.ReasonNoDescriptors))
}

// streamDropped counts a dropped event stream.
func (a *app) streamDropped(why api.StreamDrop) {
	a.metrics.Add("cm_event_streams_dropped_total", "GET /api/events streams dropped because their consumer did not keep up, by reason.",
		1, "reason", string(why))
}

// drainAgents ends the terminal sessions (1001 to their operators), then
// closes every agent connection with 1001 and refuses new ones.
func (a *app) drainAgents(ctx context.Context) error {
	serr := a.sessions.Shutdown(ctx)
	return errors.Join(serr, a.hub.Shutdown(ctx))
}

// close stops the background loops and closes the store.
func (a *app) close() error {
	a.cancel()
	a.bg.Wait()
	return a.store.Close()
}

// countResponses is middleware counting HTTP responses by status code.
func (a *app) countResponses(c *gin.Context) {
	c.Next()
	a.metrics.Add("cm_http_responses_total", "HTTP responses, by status code.", 1, "code", strconv.Itoa(c.Writer.Status()))
}

// presence adapts the hub to api.Presence.
type presence struct{ *hub.Hub }

// ConnectedSince implements api.Presence.
func (p presence) ConnectedSince(agentID string) (time.Time, bool) {
	sess, ok := p.Session(agentID)
	return sess.ConnectedAt, ok
}

// Disconnect implements api.Presence.
func (p presence) Disconnect(agentID string, code int, reason string) bool {
	return p.Hub.Disconnect(agentID, websocket.StatusCode(code), reason)
}
