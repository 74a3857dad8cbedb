// Command client-manager serves remote agents over WebSocket and operators
// over REST. Launched by the runtime it also serves the plugin contract over
// gRPC; started by hand it runs standalone until SIGTERM or SIGINT.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/kelseyhightower/envconfig"

	"github.com/home-console/client-manager/internal/cmservice"
	"github.com/home-console/client-manager/internal/logging"
	"github.com/home-console/client-manager/pkg/pluginproto"
)

// config is read from CLIENT_MANAGER_* environment variables.
type config struct {
	Host         string        `envconfig:"HOST" default:"0.0.0.0"`
	Port         int           `envconfig:"PORT" default:"10000"`
	DataDir      string        `envconfig:"DATA_DIR" default:"data"`
	LogLevel     string        `envconfig:"LOG_LEVEL" default:"info"`
	LogFormat    string        `envconfig:"LOG_FORMAT" default:"text"`
	DrainTimeout time.Duration `envconfig:"DRAIN_TIMEOUT" default:"10s"`
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "client-manager:", err)
		os.Exit(1)
	}
}

func run() error {
	var cfg config
	if err := envconfig.Process("CLIENT_MANAGER", &cfg); err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	// Logs always go to stderr: in plugin mode stdout carries the handshake.
	log, err := logging.New(os.Stderr, cfg.LogLevel, cfg.LogFormat)
	if err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	svc := cmservice.New(cmservice.Config{Host: cfg.Host, Port: cfg.Port, DataDir: cfg.DataDir}, log)

	if pluginproto.LaunchedByRuntime() {
		pluginproto.Serve(&cmservice.Plugin{Service: svc})
		return nil
	}
	return runStandalone(svc, log, cfg.DrainTimeout)
}

func runStandalone(svc *cmservice.Service, log *slog.Logger, drain time.Duration) error {
	signal.Ignore(syscall.SIGPIPE)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if _, err := svc.Start(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	log.Info("signal received, draining")
	sctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	return svc.Stop(sctx, "signal")
}
