// Command runtime is the plugin host. It discovers plugin manifests, runs
// each plugin as a separate OS process supervised through go-plugin, and
// serves the admin API (default 127.0.0.1:8000) and, on the same port, the
// HTTP API of every plugin with a "mount" in its manifest.
//
// SIGTERM or SIGINT stops the plugins in reverse dependency order, then the
// runtime exits 0. SIGUSR2 detaches: the runtime exits 0 and leaves its
// running plugins running; the next runtime started with the same
// RUNTIME_STATE_DIR re-attaches to them (as it does after a SIGKILL).
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/kelseyhightower/envconfig"

	"github.com/home-console/client-manager/internal/adminapi"
	"github.com/home-console/client-manager/internal/logging"
	"github.com/home-console/client-manager/internal/manifest"
	"github.com/home-console/client-manager/internal/pluginstate"
	"github.com/home-console/client-manager/internal/proxy"
	"github.com/home-console/client-manager/internal/supervisor"
)

// version is the runtime's version.
const version = "0.1.0"

// addrFile is the file in the state directory holding the admin address.
const addrFile = "admin.addr"

// config is read from RUNTIME_* environment variables.
type config struct {
	Host            string        `envconfig:"HOST" default:"127.0.0.1"`
	Port            int           `envconfig:"PORT" default:"8000"`
	PluginsDir      string        `envconfig:"PLUGINS_DIR" default:"plugins"`
	StateDir        string        `envconfig:"STATE_DIR" default:"state"`
	ShutdownTimeout time.Duration `envconfig:"SHUTDOWN_TIMEOUT" default:"30s"`
	LogLevel        string        `envconfig:"LOG_LEVEL" default:"info"`
	LogFormat       string        `envconfig:"LOG_FORMAT" default:"text"`
	AdminToken      string        `envconfig:"ADMIN_TOKEN"`
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "runtime:", err)
		os.Exit(1)
	}
}

func run() error {
	cfg, err := loadConfig()
	if err != nil {
		return err
	}
	log, err := logging.New(os.Stderr, cfg.LogLevel, cfg.LogFormat)
	if err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	detach := make(chan os.Signal, 1)
	signal.Notify(detach, syscall.SIGUSR2)
	defer signal.Stop(detach)

	log.Info("runtime starting", "version", version, "plugins_dir", cfg.PluginsDir, "state_dir", cfg.StateDir)
	set, err := manifest.Discover(cfg.PluginsDir)
	if err != nil {
		return err
	}
	report(log, set)
	group := supervisor.NewGroup(set, supervisor.Options{StateDir: cfg.StateDir}, log)

	ln, err := listen(cfg)
	if err != nil {
		return err
	}
	srv := newServer(group, set, cfg, log)
	addr := ln.Addr().String()
	if err := writeAddrFile(cfg.StateDir, addr); err != nil {
		_ = ln.Close()
		return err
	}
	defer os.Remove(filepath.Join(cfg.StateDir, addrFile))
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

// newServer returns the HTTP server of the runtime's port: the plugins'
// mounts, and the admin API for every other path.
func newServer(group *supervisor.Group, set *manifest.Set, cfg config, log *slog.Logger) *http.Server {
	admin := adminapi.New(group, adminapi.Config{Token: cfg.AdminToken, Version: version, StartedAt: time.Now()}, log)
	var mounts []proxy.Mount
	for _, e := range set.Entries {
		if e.Runnable() && e.Manifest.Mount != "" {
			mounts = append(mounts, proxy.Mount{Path: e.Manifest.Mount, Plugin: e.Name})
			log.Info("plugin mounted", "plugin", e.Name, "mount", e.Manifest.Mount)
		}
	}
	resolve := func(name string) (proxy.Upstream, error) {
		sup, err := group.Get(name)
		if err != nil {
			return proxy.Upstream{}, err
		}
		addr, token, ok := sup.Upstream()
		if !ok {
			if st := sup.Snapshot().State; st != pluginstate.StateRunning {
				return proxy.Upstream{}, fmt.Errorf("plugin %s is %s", name, st)
			}
			return proxy.Upstream{}, fmt.Errorf("plugin %s serves no HTTP", name)
		}
		return proxy.Upstream{Addr: addr, Token: token}, nil
	}
	return &http.Server{
		Handler:           proxy.New(proxy.Config{Mounts: mounts, Resolve: resolve, Next: admin, Log: log}),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// supervise starts the plugins and, once ctx ends (a signal) or the admin
// server fails, stops them in reverse dependency order within timeout. A
// signal on detach leaves the running plugins running instead.
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

func loadConfig() (config, error) {
	var cfg config
	if err := envconfig.Process("RUNTIME", &cfg); err != nil {
		return cfg, fmt.Errorf("configuration: %w", err)
	}
	switch {
	case cfg.Port < 0 || cfg.Port > 65535:
		return cfg, fmt.Errorf("configuration: RUNTIME_PORT %d: want 0-65535", cfg.Port)
	case cfg.ShutdownTimeout <= 0:
		return cfg, errors.New("configuration: RUNTIME_SHUTDOWN_TIMEOUT must be positive")
	case cfg.AdminToken == "" && !isLoopback(cfg.Host):
		return cfg, fmt.Errorf("configuration: RUNTIME_HOST %q is not a loopback address; "+
			"set RUNTIME_ADMIN_TOKEN to serve the admin API beyond this machine", cfg.Host)
	}
	return cfg, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func listen(cfg config) (net.Listener, error) {
	addr := net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.Port))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("admin API: cannot listen on %s: %w", addr, err)
	}
	return ln, nil
}

// writeAddrFile writes addr to <dir>/admin.addr atomically.
func writeAddrFile(dir, addr string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	f, err := os.CreateTemp(dir, addrFile+".*")
	if err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	_, err = f.WriteString(addr + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(f.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(f.Name(), filepath.Join(dir, addrFile))
	}
	if err != nil {
		_ = os.Remove(f.Name())
		return fmt.Errorf("write %s: %w", addrFile, err)
	}
	return nil
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
