// Package cmservice runs the client manager's HTTP service: it binds the
// listener, serves the health endpoints and the APIs, and drains on stop.
// The same Service backs both modes of the binary: launched by the runtime
// (see [Plugin]) and standalone.
package cmservice

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/home-console/client-manager/internal/api"
	"github.com/home-console/client-manager/internal/connlimit"
	"github.com/home-console/client-manager/internal/dispatch"
	"github.com/home-console/client-manager/internal/drain"
	"github.com/home-console/client-manager/internal/enroll"
	"github.com/home-console/client-manager/internal/fleet"
	"github.com/home-console/client-manager/internal/hub"
)

// Config is the client manager's configuration.
type Config struct {
	// Host and Port are the HTTP listen address. Port 0 picks a free port.
	Host string
	Port int
	// DataDir holds the store and the bootstrap token.
	DataDir string
	// MaxBodyBytes bounds operator API request bodies (413 beyond).
	MaxBodyBytes int64
	// APIRate and APIBurst bound operator API requests per caller: a
	// token bucket per principal, or per address for requests that fail
	// authentication (defaults 50/s, burst 100); 429 beyond.
	APIRate  float64
	APIBurst int
	// AllowedOrigins are patterns of browser origins (see
	// internal/origin) allowed to call the API and open agent WebSockets
	// besides same-origin pages; none by default.
	AllowedOrigins []string
	// TLSCert and TLSKey are PEM files of the server certificate (chain)
	// and its key. Both set: the port serves HTTPS only (agents use
	// wss://); neither: plain HTTP. One alone is an error.
	TLSCert, TLSKey string
	// OperatorCommands lists the executables the operator role may run
	// (nil: access.DefaultOperatorCommands).
	OperatorCommands []string
	// ProxyToken is the secret the runtime's reverse proxy sends with
	// proxied requests; see pluginproto.ConfigProxyToken. Empty when the
	// plugin is not mounted or runs standalone.
	ProxyToken string
	// Timeouts bound each part of an HTTP exchange on the port; zero
	// fields take connlimit.DefaultTimeouts'.
	Timeouts connlimit.Timeouts
	// MaxOpenConnections bounds the port's open connections of every
	// kind, agent WebSockets included (connlimit.Listener: the longest
	// waiting one is shed beyond); 0 means DefaultMaxOpenConnections.
	// The process's descriptor limit lowers it further.
	MaxOpenConnections int
	// EventQueue and EventWriteTimeout bound each GET /api/events
	// consumer (see api.Server.StreamQueue); zero takes the api defaults.
	EventQueue        int
	EventWriteTimeout time.Duration
	// Hub, Dispatch and Enroll tune the agent endpoint, command dispatch
	// and enrollment; zero fields take those packages' defaults, but the
	// client manager's default Hub.MaxConnections is DefaultMaxAgents.
	Hub      hub.Config
	Dispatch dispatch.Config
	Enroll   enroll.Options
	// Sessions tunes terminals and file transfers.
	Sessions Sessions
}

// Connection bounds of the client manager's port. A process holds about
// 19,000 agents within the usual limit of 20,000 descriptors: the port
// takes at most 19,500 connections, of which at most 19,000 agent
// WebSockets, so that 500 stay for operators, event streams and health
// checks, and at least 500 descriptors for the store, logs and the
// plugin connection.
const (
	DefaultMaxOpenConnections = 19500
	DefaultMaxAgents          = 19000
)

// DefaultConfig returns the configuration the client manager runs with
// when nothing is set. New applies the defaults of MaxBodyBytes, APIRate,
// APIBurst, Timeouts, MaxOpenConnections and the event stream's bounds,
// and the packages behind Hub, Dispatch and Enroll theirs, to zero
// fields; Host, Port and DataDir are taken as given.
func DefaultConfig() Config {
	h := hub.DefaultConfig()
	h.MaxConnections = DefaultMaxAgents
	return Config{
		Host:               "0.0.0.0",
		Port:               10000,
		DataDir:            "data",
		MaxBodyBytes:       DefaultMaxBodyBytes,
		APIRate:            DefaultAPIRate,
		APIBurst:           DefaultAPIBurst,
		Timeouts:           connlimit.DefaultTimeouts(),
		MaxOpenConnections: DefaultMaxOpenConnections,
		EventQueue:         api.DefaultStreamQueue,
		EventWriteTimeout:  api.DefaultStreamWriteTimeout,
		Hub:                h,
		Dispatch:           dispatch.DefaultConfig(),
		Enroll:             enroll.DefaultOptions(),
		Sessions:           DefaultSessions(),
	}
}

// timeouts returns c.Timeouts with defaults for its zero fields.
func (c Config) timeouts() connlimit.Timeouts {
	d := connlimit.DefaultTimeouts()
	return connlimit.Timeouts{
		ReadHeader: cmp.Or(c.Timeouts.ReadHeader, d.ReadHeader), Read: cmp.Or(c.Timeouts.Read, d.Read),
		Write: cmp.Or(c.Timeouts.Write, d.Write), Idle: cmp.Or(c.Timeouts.Idle, d.Idle),
	}
}

// State is where a Service is in its life.
type State string

// States of a Service.
const (
	StateNew      State = "new"
	StateStarting State = "starting"
	StateReady    State = "ready"
	StateDraining State = "draining"
	StateStopped  State = "stopped"
)

// Service is the client manager's HTTP service. Its methods are safe for
// concurrent use.
type Service struct {
	cfg        Config
	log        *slog.Logger
	instanceID string
	startedAt  time.Time

	mu    sync.Mutex
	state State
	addr  string
	srv   *http.Server
	conns *connlimit.Listener
	app   *app
	done  chan struct{} // closed when Stop has finished
	// drain ends the long-lived responses (event streams, synchronous
	// command waits) when Stop begins, so they never hold the drain.
	drain *drain.Notice
}

// New returns a Service that is not yet serving.
func New(cfg Config, log *slog.Logger) *Service {
	return &Service{
		cfg:        cfg,
		log:        log,
		instanceID: newInstanceID(),
		state:      StateNew,
		done:       make(chan struct{}),
		drain:      drain.New(),
	}
}

// InstanceID is unique to this process start.
func (s *Service) InstanceID() string { return s.instanceID }

// State returns the current state.
func (s *Service) State() State {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state
}

// Addr returns the address the service listens on, "" before Start.
func (s *Service) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Done is closed once Stop has completed.
func (s *Service) Done() <-chan struct{} { return s.done }

// TrustProxy sets the runtime proxy's secret (see Config.ProxyToken). Call
// it before Start.
func (s *Service) TrustProxy(token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cfg.ProxyToken = token
}

// Start binds the listener and serves in the background. It returns the
// bound address. Calling Start on a started Service returns its address;
// a stopped Service cannot be started again.
func (s *Service) Start(ctx context.Context) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch s.state {
	case StateStarting, StateReady:
		return s.addr, nil
	case StateDraining, StateStopped:
		return "", errors.New("service already stopped")
	}
	s.state = StateStarting

	tlsConf, err := loadTLS(s.cfg.TLSCert, s.cfg.TLSKey)
	if err != nil {
		s.state = StateNew
		return "", err
	}
	a, err := openApp(ctx, s.cfg, s.log)
	if err != nil {
		s.state = StateNew
		return "", err
	}
	ln, err := s.listen(ctx)
	if err != nil {
		s.state = StateNew
		_ = a.close()
		return "", err
	}
	s.app, s.conns = a, ln
	s.addr = ln.Addr().String()
	s.startedAt = time.Now()
	s.srv = newServer(forwardedCaller(s.cfg.ProxyToken, s.routes(a)), tlsConf, s.cfg.timeouts(), s.drain, s.log)
	ln.Configure(s.srv)
	a.countConnections(ln)
	go func() {
		var err error
		if tlsConf != nil {
			err = s.srv.ServeTLS(ln, "", "")
		} else {
			err = s.srv.Serve(ln)
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("http server stopped", "err", err)
		}
	}()
	s.state = StateReady
	s.log.Info("client manager serving", "addr", s.addr, "tls", tlsConf != nil, "instance_id", s.instanceID)
	return s.addr, nil
}

// listen binds the port behind the connection limit.
func (s *Service) listen(ctx context.Context) (*connlimit.Listener, error) {
	addr := net.JoinHostPort(s.cfg.Host, strconv.Itoa(s.cfg.Port))
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	l := connlimit.New(ln, connlimit.Config{Max: cmp.Or(s.cfg.MaxOpenConnections, DefaultMaxOpenConnections), Log: s.log})
	s.log.Info("connection limit", "max_open_connections", l.Limit())
	return l, nil
}

// Stop drains: readiness turns 503; long-lived responses end at once (an
// event stream with a last "shutdown" event carrying reason, a
// synchronous command wait with the command's current state); agents are
// closed with 1001; other in-flight requests finish until ctx's deadline,
// then the listener is closed. Stop is idempotent; later calls wait for
// the first to finish.
func (s *Service) Stop(ctx context.Context, reason string) error {
	s.mu.Lock()
	switch s.state {
	case StateDraining, StateStopped:
		s.mu.Unlock()
		select {
		case <-s.done:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	case StateNew:
		s.state = StateStopped
		s.mu.Unlock()
		close(s.done)
		return nil
	}
	s.state = StateDraining
	srv, a := s.srv, s.app
	s.mu.Unlock()

	s.log.Info("client manager draining", "reason", reason)
	s.drain.Begin(reason)
	if derr := a.drainAgents(ctx); derr != nil {
		s.log.Warn("agent drain incomplete", "err", derr)
	}
	err := srv.Shutdown(ctx)
	if err != nil {
		_ = srv.Close()
	}
	if cerr := a.close(); cerr != nil {
		s.log.Error("closing the store failed", "err", cerr)
	}
	s.mu.Lock()
	s.state = StateStopped
	s.mu.Unlock()
	close(s.done)
	s.log.Info("client manager stopped")
	if err != nil {
		return fmt.Errorf("drain: %w", err)
	}
	return nil
}

// agentsConnected returns the number of connected agents (0 before Start).
func (s *Service) agentsConnected() int {
	s.mu.Lock()
	a := s.app
	s.mu.Unlock()
	if a == nil {
		return 0
	}
	return a.hub.Count()
}

// storeWritable returns nil if the store takes writes (or before
// Start), else why not: its latest write failed (sqlite.Store.Writable),
// or work it refused still waits for it (held command results, audit
// outcomes), which a small write that fits in space left over does not
// clear.
func (s *Service) storeWritable() error {
	s.mu.Lock()
	a := s.app
	s.mu.Unlock()
	if a == nil {
		return nil
	}
	if err := a.store.Writable(); err != nil {
		return err
	}
	held, audits := a.dispatch.Held(), 0
	if a.api != nil {
		audits = a.api.UnfinishedAudits()
	}
	if held > 0 || audits > 0 {
		return fleet.Errorf(fleet.CodeStorageUnavailable,
			"storage unavailable: %d command results and %d audit outcomes wait for the store to take them", held, audits)
	}
	return nil
}

func newInstanceID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
