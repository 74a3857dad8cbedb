// Command client-manager serves remote agents over WebSocket and operators
// over REST. Launched by the runtime it also serves the plugin contract over
// gRPC; started by hand it runs standalone until SIGTERM or SIGINT.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/kelseyhightower/envconfig"

	"github.com/home-console/client-manager/internal/cmservice"
	"github.com/home-console/client-manager/internal/dispatch"
	"github.com/home-console/client-manager/internal/enroll"
	"github.com/home-console/client-manager/internal/hub"
	"github.com/home-console/client-manager/internal/logging"
	"github.com/home-console/client-manager/internal/origin"
	"github.com/home-console/client-manager/pkg/pluginproto"
)

// config is read from CLIENT_MANAGER_* environment variables; the README
// documents each one.
type config struct {
	Host     string `envconfig:"HOST" default:"0.0.0.0"`
	Port     int    `envconfig:"PORT" default:"10000"`
	DataDir  string `envconfig:"DATA_DIR" default:"data"`
	LogLevel string `envconfig:"LOG_LEVEL" default:"info"`
	// LogFormat defaults to json when launched by the runtime (which
	// re-logs each record with its level and fields) and text otherwise.
	LogFormat    string        `envconfig:"LOG_FORMAT"`
	DrainTimeout time.Duration `envconfig:"DRAIN_TIMEOUT" default:"10s"`
	MaxBodyBytes int64         `envconfig:"MAX_BODY_BYTES" default:"1048576"`
	APIRate      float64       `envconfig:"API_RATE" default:"50"`
	APIBurst     int           `envconfig:"API_BURST" default:"100"`

	// AllowedOrigins are browser origin patterns; none by default.
	AllowedOrigins []string `envconfig:"ALLOWED_ORIGINS"`
	TLSCert        string   `envconfig:"TLS_CERT"`
	TLSKey         string   `envconfig:"TLS_KEY"`

	// OperatorCommands defaults to access.DefaultOperatorCommands.
	OperatorCommands []string `envconfig:"OPERATOR_COMMANDS"`

	MaxConnections    int           `envconfig:"MAX_CONNECTIONS" default:"100000"`
	MaxMessageBytes   int64         `envconfig:"MAX_MESSAGE_BYTES" default:"1048576"`
	OutboundQueue     int           `envconfig:"OUTBOUND_QUEUE" default:"256"`
	MessageRate       float64       `envconfig:"MESSAGE_RATE" default:"100"`
	ConnectRate       float64       `envconfig:"CONNECT_RATE" default:"500"`
	ConnectBurst      int           `envconfig:"CONNECT_BURST" default:"1000"`
	HelloTimeout      time.Duration `envconfig:"HELLO_TIMEOUT" default:"10s"`
	HeartbeatInterval time.Duration `envconfig:"HEARTBEAT_INTERVAL" default:"15s"`
	LivenessTimeout   time.Duration `envconfig:"LIVENESS_TIMEOUT" default:"45s"`

	DefaultCommandTimeout time.Duration `envconfig:"COMMAND_TIMEOUT" default:"30s"`
	MaxOutputBytes        int           `envconfig:"MAX_OUTPUT_BYTES" default:"524288"`
	Retention             time.Duration `envconfig:"RETENTION" default:"720h"`

	EnrollRate    int           `envconfig:"ENROLL_RATE" default:"10"`
	BootstrapUses int           `envconfig:"BOOTSTRAP_USES" default:"10"`
	BootstrapTTL  time.Duration `envconfig:"BOOTSTRAP_TTL" default:"24h"`
}

// validate checks what envconfig cannot.
func (c config) validate() error {
	switch {
	case (c.TLSCert == "") != (c.TLSKey == ""):
		return errors.New("CLIENT_MANAGER_TLS_CERT and CLIENT_MANAGER_TLS_KEY go together: " +
			"set both (PEM certificate and key files) to serve HTTPS and wss://, or neither for plain HTTP")
	case c.APIRate <= 0 || c.APIBurst < 1:
		return errors.New("CLIENT_MANAGER_API_RATE must be positive and CLIENT_MANAGER_API_BURST at least 1")
	}
	if _, err := origin.New(c.AllowedOrigins); err != nil {
		return fmt.Errorf("CLIENT_MANAGER_ALLOWED_ORIGINS: %w", err)
	}
	return nil
}

// service returns the service configuration.
func (c config) service() cmservice.Config {
	return cmservice.Config{
		Host:         c.Host,
		Port:         c.Port,
		DataDir:      c.DataDir,
		MaxBodyBytes: c.MaxBodyBytes,
		APIRate:      c.APIRate,
		APIBurst:     c.APIBurst,

		AllowedOrigins:   c.AllowedOrigins,
		TLSCert:          c.TLSCert,
		TLSKey:           c.TLSKey,
		OperatorCommands: c.OperatorCommands,
		Hub: hub.Config{
			MaxConnections:    c.MaxConnections,
			MaxMessageBytes:   c.MaxMessageBytes,
			OutboundQueue:     c.OutboundQueue,
			MessageRate:       c.MessageRate,
			ConnectRate:       c.ConnectRate,
			ConnectBurst:      c.ConnectBurst,
			HelloTimeout:      c.HelloTimeout,
			HeartbeatInterval: c.HeartbeatInterval,
			LivenessTimeout:   c.LivenessTimeout,
		},
		Dispatch: dispatch.Config{
			DefaultTimeout: c.DefaultCommandTimeout,
			MaxOutputBytes: c.MaxOutputBytes,
			Retention:      c.Retention,
		},
		Enroll: enroll.Options{
			AttemptsPerMinute: c.EnrollRate,
			BootstrapUses:     c.BootstrapUses,
			BootstrapTTL:      c.BootstrapTTL,
		},
	}
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
	// The writer never blocks; launched by the runtime it forwards over the
	// plugin connection, so a re-attached runtime still gets the logs.
	if cfg.LogFormat == "" {
		cfg.LogFormat = "text"
		if pluginproto.LaunchedByRuntime() {
			cfg.LogFormat = "json"
		}
	}
	logs := pluginproto.NewLogWriter(os.Stderr)
	log, err := logging.New(logs, cfg.LogLevel, cfg.LogFormat)
	if err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	if len(os.Args) > 1 && os.Args[1] == "token" {
		return runToken(context.Background(), cfg.DataDir, os.Args[2:], os.Stdout)
	}
	if err := cfg.validate(); err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	svc := cmservice.New(cfg.service(), log)

	if pluginproto.LaunchedByRuntime() {
		pluginproto.Serve(&cmservice.Plugin{Service: svc}, pluginproto.WithLogWriter(logs))
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
