// Package runtimehost assembles the runtime: it takes the state
// directory, discovers the plugins, serves the admin API and the plugins'
// mounts on the runtime's port, starts and supervises the plugins, and
// stops or leaves them when the runtime ends. cmd/runtime only parses its
// configuration and calls [Run].
package runtimehost

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/home-console/client-manager/internal/atomicfile"
	"github.com/home-console/client-manager/internal/connlimit"
	"github.com/home-console/client-manager/internal/dirlock"
	"github.com/home-console/client-manager/internal/manifest"
	"github.com/home-console/client-manager/internal/origin"
	"github.com/home-console/client-manager/internal/supervisor"
	"github.com/home-console/client-manager/internal/version"
)

// Files in the state directory.
const (
	// AddrFile holds the admin API's address (host:port and a newline)
	// while the runtime serves; it is removed when Run returns.
	AddrFile = "admin.addr"
	// LockFile is locked by the running runtime and holds its pid.
	LockFile = "runtime.lock"
)

// Config is the runtime's configuration; cmd/runtime sets it from the
// RUNTIME_* variables named in [Config.Validate]'s errors.
type Config struct {
	// Host and Port are the address of the admin API and the plugins'
	// mounts; port 0 picks a free port.
	Host string
	Port int
	// PluginsDir holds a <plugin>/plugin.json manifest per plugin.
	PluginsDir string
	// StateDir holds the lock, the address file and the re-attach
	// records; one runtime at a time uses it.
	StateDir string
	// ShutdownTimeout bounds stopping every plugin; the process groups
	// still running after it are killed.
	ShutdownTimeout time.Duration
	// AdminToken, if not empty, is the bearer token of the admin API.
	AdminToken string
	// Timeouts bound each part of an HTTP exchange on the port.
	Timeouts connlimit.Timeouts
	// MaxOpenConnections bounds the port's open connections of every kind
	// (connlimit.Listener: the longest-waiting one is shed beyond); the
	// process's descriptor limit lowers it further.
	MaxOpenConnections int
	// AllowedHosts are the names, besides loopback ones and Host, that
	// requests to the port may address (origin.NewHosts patterns); any
	// other Host is answered 421 (DNS rebinding).
	AllowedHosts []string
	// AllowedOrigins are the browser origins, besides the addressed
	// host's own, allowed to send the admin API state-changing requests
	// (origin.New patterns).
	AllowedOrigins []string
}

// Names of the variables that set the allow-lists, named in refusals.
const (
	allowedHostsVar   = "RUNTIME_ALLOWED_HOSTS"
	allowedOriginsVar = "RUNTIME_ALLOWED_ORIGINS"
)

// guards are the browser rules of the runtime's port.
type guards struct {
	hosts   origin.Hosts
	origins origin.Policy
}

// guards returns the allow-lists c configures.
func (c Config) guards() (guards, error) {
	hosts, err := origin.NewHosts(c.Host, c.AllowedHosts, allowedHostsVar)
	if err != nil {
		return guards{}, fmt.Errorf("%w: %s: %w", ErrConfig, allowedHostsVar, err)
	}
	origins, err := origin.New(c.AllowedOrigins)
	if err != nil {
		return guards{}, fmt.Errorf("%w: %s: %w", ErrConfig, allowedOriginsVar, err)
	}
	return guards{hosts: hosts, origins: origins.WithSetting(allowedOriginsVar)}, nil
}

// DefaultMaxOpenConnections is the runtime's default connection limit:
// in one-port mode each proxied connection also holds one to its plugin,
// so half of the usual 20,000 descriptors, less a reserve.
const DefaultMaxOpenConnections = 9500

// DefaultConfig returns the configuration the runtime runs with when
// nothing is set.
func DefaultConfig() Config {
	return Config{
		Host:            "127.0.0.1",
		Port:            8000,
		PluginsDir:      "plugins",
		StateDir:        "state",
		ShutdownTimeout: 30 * time.Second,

		Timeouts:           connlimit.DefaultTimeouts(),
		MaxOpenConnections: DefaultMaxOpenConnections,
	}
}

// ErrConfig is matched (errors.Is) by the errors of [Config.Validate].
var ErrConfig = errors.New("configuration")

// Validate checks c. The admin API is served beyond this machine only
// with a token.
func (c Config) Validate() error {
	switch {
	case c.Port < 0 || c.Port > 65535:
		return fmt.Errorf("%w: RUNTIME_PORT %d: want 0-65535", ErrConfig, c.Port)
	case c.ShutdownTimeout <= 0:
		return fmt.Errorf("%w: RUNTIME_SHUTDOWN_TIMEOUT must be positive", ErrConfig)
	case c.MaxOpenConnections < 1:
		return fmt.Errorf("%w: RUNTIME_MAX_OPEN_CONNECTIONS must be at least 1", ErrConfig)
	case c.AdminToken == "" && !isLoopback(c.Host):
		return fmt.Errorf("%w: RUNTIME_HOST %q is not a loopback address; "+
			"set RUNTIME_ADMIN_TOKEN to serve the admin API beyond this machine", ErrConfig, c.Host)
	}
	if err := c.Timeouts.Validate("RUNTIME_"); err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	_, err := c.guards()
	return err
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Run runs the runtime until ctx ends or SIGUSR2 arrives, and returns
// once the plugins are stopped (ctx ended: in reverse dependency order,
// within cfg.ShutdownTimeout) or left running for the next runtime to
// re-attach to (SIGUSR2, "detach"). It returns early with an error when
// cfg is invalid, another runtime holds cfg.StateDir (the error names its
// pid and matches dirlock.ErrHeld), the port cannot be bound, or the admin
// server fails (the plugins are then stopped). Run holds the state
// directory's lock until it returns; call it once per process.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.StateDir, 0o755); err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	lock, err := dirlock.Acquire(filepath.Join(cfg.StateDir, LockFile))
	if err != nil {
		return fmt.Errorf("state directory %s is in use: %w", cfg.StateDir, err)
	}
	defer lock.Release()
	detach := make(chan os.Signal, 1)
	signal.Notify(detach, syscall.SIGUSR2)
	defer signal.Stop(detach)

	v := version.Get()
	log.Info("runtime starting", "pid", os.Getpid(), "version", v.Version, "commit", v.Commit,
		"plugins_dir", cfg.PluginsDir, "state_dir", cfg.StateDir)
	set, err := manifest.Discover(cfg.PluginsDir)
	if err != nil {
		return err
	}
	report(log, set)
	group := supervisor.NewGroup(set, supervisor.Options{StateDir: cfg.StateDir}, log)
	g, err := cfg.guards()
	if err != nil {
		return err
	}
	if ip := net.ParseIP(cfg.Host); (cfg.Host == "" || ip != nil && ip.IsUnspecified()) && len(cfg.AllowedHosts) == 0 {
		log.Warn("listening on every address: requests addressed by a name other than localhost are refused (421) "+
			"unless "+allowedHostsVar+" lists it", "host", cfg.Host)
	}
	return serve(ctx, cfg, g, set, group, detach, log)
}

// serve binds the port, publishes its address and supervises group until
// the end; see [Run].
func serve(ctx context.Context, cfg Config, g guards, set *manifest.Set, group *supervisor.Group,
	detach <-chan os.Signal, log *slog.Logger) error {
	addr := net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.Port))
	inner, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("admin API: cannot listen on %s: %w", addr, err)
	}
	ln := connlimit.New(inner, connlimit.Config{Max: cfg.MaxOpenConnections, Log: log})
	srv := newServer(group, set, cfg, g, log)
	ln.Configure(srv)
	addr = ln.Addr().String()
	addrPath := filepath.Join(cfg.StateDir, AddrFile)
	if err := atomicfile.Write(addrPath, []byte(addr+"\n"), 0o644); err != nil {
		_ = ln.Close()
		return fmt.Errorf("state directory: %w", err)
	}
	defer os.Remove(addrPath)
	log.Info("admin API listening", "addr", addr)
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()

	err = supervise(ctx, detach, group, serveErr, cfg.ShutdownTimeout, log)
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if serr := srv.Shutdown(sctx); serr != nil && err == nil {
		err = fmt.Errorf("admin API shutdown: %w", serr)
	}
	log.Info("runtime stopped")
	return err
}

// supervise starts the plugins and, once ctx ends or the admin server
// fails, stops them in reverse dependency order within timeout. A signal
// on detach leaves the running plugins running instead.
func supervise(ctx context.Context, detach <-chan os.Signal, group *supervisor.Group, serveErr <-chan error,
	timeout time.Duration, log *slog.Logger) error {
	runCtx, stopLoops := context.WithCancel(context.Background())
	group.Run(runCtx)
	startCtx, cancelStart := context.WithCancel(ctx)
	started := make(chan struct{})
	go func() {
		defer close(started)
		group.StartAll(startCtx)
	}()

	var err error
	detached := false
	select {
	case <-ctx.Done():
		log.Info("signal received, stopping plugins", "timeout", timeout)
	case <-detach:
		detached = true
		log.Info("SIGUSR2 received: detaching, running plugins keep running for the next runtime")
	case err = <-serveErr:
		err = fmt.Errorf("admin API: %w", err)
		log.Error("admin API failed, stopping plugins", "err", err)
	}
	cancelStart()
	<-started
	if detached {
		group.Detach()
	} else {
		sctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		group.StopAll(sctx)
	}
	stopLoops()
	group.Wait()
	return err
}

// report logs what discovery found.
func report(log *slog.Logger, set *manifest.Set) {
	if len(set.Entries) == 0 {
		log.Warn("no plugins found")
	}
	for _, e := range set.Entries {
		switch e.Status {
		case manifest.StatusOK:
			log.Info("plugin found", "plugin", e.Name, "version", e.Manifest.Version, "dir", e.Dir)
		case manifest.StatusDisabled:
			log.Info("plugin disabled", "plugin", e.Name, "dir", e.Dir)
		default:
			log.Error("plugin cannot run", "plugin", e.Name, "state", e.Status, "reason", e.Reason, "dir", e.Dir)
		}
	}
}
