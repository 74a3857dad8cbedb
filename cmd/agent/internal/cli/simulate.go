package cli

import (
	"context"
	"encoding/json"
	"errors"
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
	o, code, done := parseSimFlags(args, getenv, stdout, stderr)
	if done {
		return code
	}
	cfg := o.cfg
	level, err := parseLevel(o.level)
	if err == nil && cfg.Count <= 0 {
		err = errors.New("--count must be positive")
	}
	if err == nil && o.token != "" {
		cfg.EnrollToken, err = readToken(o.token)
	}
	tlsConf, terr := loadTLS(o.caFile)
	if err = errors.Join(err, terr); err != nil {
		fmt.Fprintln(stderr, "agent simulate:", err)
		return ExitUsage
	}
	cfg.Allowed = splitList(o.allow)
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

// simOptions are the flags of agent simulate, before validation.
type simOptions struct {
	cfg                         sim.Config
	token, allow, level, caFile string
}

const simUsage = `Usage:
  agent simulate [flags]   run --count simulated agents in this process, for load tests

Periodic stats go to stderr, a JSON summary to stdout at the end.
Exit status: 0 done or stopped by a signal (or -h, --version), 1 error, 2 usage.
`

// parseSimFlags parses the flags of agent simulate over their environment
// variables; see commandLine.parse for code and done.
func parseSimFlags(args []string, getenv func(string) string, stdout, stderr io.Writer) (o simOptions, code int, done bool) {
	c := newCommandLine("agent simulate", simUsage)
	fs, cfg := c.fs, &o.cfg
	e := envFlags{fs: fs, getenv: getenv}
	e.string(&cfg.Server, "server", "AGENT_SERVER", "http://localhost:10000", "client manager base URL")
	e.secret(&o.token, "enroll-token", "AGENT_ENROLL_TOKEN", "enrollment token or @file, for agents missing from the credentials file")
	e.string(&cfg.CredentialsFile, "credentials-file", "AGENT_SIM_CREDENTIALS", "sim-credentials.jsonl", "JSON Lines file of the simulated agents' credentials (created, reused, extended)")
	e.string(&o.allow, "allow", "AGENT_ALLOW", "echo,true,false,sleep,uname", "allow-list of every simulated agent")
	e.string(&o.level, "log-level", "AGENT_LOG_LEVEL", "error", "debug, info, warn or error (warn logs every reconnect of every agent)")
	e.string(&o.caFile, "ca-file", "AGENT_CA_FILE", "", "PEM file of CA certificates to trust for https/wss")
	fs.IntVar(&cfg.Count, "count", 100, "number of simulated agents (mind the open-file limit)")
	fs.Float64Var(&cfg.ConnectRate, "connect-rate", 200, "first connections per second (0: all at once)")
	fs.DurationVar(&cfg.HeartbeatInterval, "heartbeat", 0, "heartbeat interval override (0: the server's)")
	fs.DurationVar(&cfg.HeartbeatTick, "heartbeat-tick", 100*time.Millisecond, "resolution of the shared heartbeat scheduler")
	fs.DurationVar(&cfg.StatsInterval, "stats-interval", 5*time.Second, "how often to print stats to stderr")
	fs.DurationVar(&cfg.Duration, "duration", 0, "stop after this long (0: at SIGINT/SIGTERM)")
	fs.DurationVar(&cfg.MinBackoff, "min-backoff", time.Second, "reconnect backoff start")
	fs.DurationVar(&cfg.MaxBackoff, "max-backoff", 30*time.Second, "reconnect backoff cap")
	code, done = c.parse(args, stdout, stderr)
	return o, code, done
}
