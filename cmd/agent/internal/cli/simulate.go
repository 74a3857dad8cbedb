package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/home-console/client-manager/cmd/agent/internal/sim"
)

// simulate runs "agent simulate": enroll (once) and run many simulated
// agents, periodic stats on stderr, the JSON summary on stdout.
func simulate(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	cfg, level, caFile, err := parseSimFlags(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return ExitOK
	}
	tlsConf, terr := loadTLS(caFile)
	if err = errors.Join(err, terr); err != nil {
		fmt.Fprintln(stderr, "agent simulate:", err)
		return ExitUsage
	}
	cfg.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	cfg.HTTPClient = &http.Client{Transport: transport(tlsConf)}
	cfg.Stats = stderr
	if err := checkOpenFiles(cfg.Count); err != nil {
		cfg.Logger.Warn("open-file limit may be too low", "err", err)
	}
	sum, err := sim.Run(ctx, cfg)
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	enc.Encode(sum)
	if err != nil && ctx.Err() == nil {
		fmt.Fprintln(stderr, "agent simulate:", err)
		return ExitError
	}
	return ExitOK
}

func parseSimFlags(args []string, getenv func(string) string, stderr io.Writer) (sim.Config, slog.Level, string, error) {
	var cfg sim.Config
	var token, allow, levelName, caFile string
	fs := flag.NewFlagSet("agent simulate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	e := envFlags{fs: fs, getenv: getenv}
	e.string(&cfg.Server, "server", "AGENT_SERVER", "http://localhost:10000", "client manager base URL")
	e.string(&token, "enroll-token", "AGENT_ENROLL_TOKEN", "", "enrollment token or @file, for agents missing from the credentials file")
	e.string(&cfg.CredentialsFile, "credentials-file", "AGENT_SIM_CREDENTIALS", "sim-credentials.jsonl", "JSON Lines file of the simulated agents' credentials (created, reused, extended)")
	e.string(&allow, "allow", "AGENT_ALLOW", "echo,true,false,sleep,uname", "allow-list of every simulated agent")
	e.string(&levelName, "log-level", "AGENT_LOG_LEVEL", "error", "debug, info, warn or error (warn logs every reconnect of every agent)")
	e.string(&caFile, "ca-file", "AGENT_CA_FILE", "", "PEM file of CA certificates to trust for https/wss")
	fs.IntVar(&cfg.Count, "count", 100, "number of simulated agents (mind the open-file limit)")
	fs.Float64Var(&cfg.ConnectRate, "connect-rate", 200, "first connections per second (0: all at once)")
	fs.DurationVar(&cfg.HeartbeatInterval, "heartbeat", 0, "heartbeat interval override (0: the server's)")
	fs.DurationVar(&cfg.HeartbeatTick, "heartbeat-tick", 100*time.Millisecond, "resolution of the shared heartbeat scheduler")
	fs.DurationVar(&cfg.StatsInterval, "stats-interval", 5*time.Second, "how often to print stats to stderr")
	fs.DurationVar(&cfg.Duration, "duration", 0, "stop after this long (0: at SIGINT/SIGTERM)")
	fs.DurationVar(&cfg.MinBackoff, "min-backoff", time.Second, "reconnect backoff start")
	fs.DurationVar(&cfg.MaxBackoff, "max-backoff", 30*time.Second, "reconnect backoff cap")
	err := fs.Parse(args)
	level, lerr := parseLevel(levelName)
	err = errors.Join(err, lerr)
	if err == nil && fs.NArg() > 0 {
		err = fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if err == nil && cfg.Count <= 0 {
		err = errors.New("--count must be positive")
	}
	if err == nil && token != "" {
		cfg.EnrollToken, err = readToken(token)
	}
	cfg.Allowed = splitList(allow)
	return cfg, level, caFile, err
}
