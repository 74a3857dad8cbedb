// Package sim runs many lightweight simulated agents in one process, for
// load tests of the client manager. Each simulated agent is a real
// [agent.Agent] (one WebSocket connection, the real protocol code) with a
// [Runner] that answers commands without spawning processes; all of them
// share one HTTP transport and one [agent.HeartbeatGroup].
package sim

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/home-console/client-manager/pkg/agent"
	"github.com/home-console/client-manager/pkg/agentproto"
)

// Config configures a simulation.
type Config struct {
	Server string
	// EnrollToken enrolls the agents missing from CredentialsFile.
	EnrollToken string
	// Count is the number of simulated agents.
	Count int
	// CredentialsFile holds the simulated agents' credentials, one JSON
	// object per line; reused and extended across runs.
	CredentialsFile string
	// ConnectRate paces the first connections, per second (<= 0: no pacing).
	ConnectRate float64
	// HeartbeatInterval overrides the server's interval if non-zero.
	HeartbeatInterval time.Duration
	// HeartbeatTick is the resolution of the shared heartbeat scheduler.
	HeartbeatTick time.Duration
	// StatsInterval is how often a stats line is written to Stats.
	StatsInterval time.Duration
	// Duration stops the simulation after this long (0: until ctx is done).
	Duration time.Duration
	// Allowed is every simulated agent's allow-list.
	Allowed                []string
	MinBackoff, MaxBackoff time.Duration
	HTTPClient             *http.Client
	Logger                 *slog.Logger
	Stats                  io.Writer
}

// Summary is the outcome of a simulation, printed as JSON at the end.
type Summary struct {
	Agents         int   `json:"agents"`
	Enrolled       int   `json:"enrolled"`
	ConnectedAtEnd int64 `json:"connected_at_end"`
	ConnectedPeak  int64 `json:"connected_peak"`
	Connects       int64 `json:"connects"`
	Reconnects     int64 `json:"reconnects"`
	Disconnects    int64 `json:"disconnects"`
	Commands       int64 `json:"commands"`
	// DuplicateExecutions counts commands that ran more than once.
	DuplicateExecutions int64 `json:"duplicate_executions"`
	// Stopped counts agents whose Run returned an error (revoked or
	// unauthorized credential).
	Stopped int64 `json:"stopped"`
	// AllConnectedS is how long it took until every agent was connected at
	// once (0 if that never happened).
	AllConnectedS float64 `json:"all_connected_s"`
	DurationS     float64 `json:"duration_s"`
}

// Run enrolls the missing agents, runs all of them until ctx is done or
// cfg.Duration has passed, and returns the summary. It blocks.
func Run(ctx context.Context, cfg Config) (Summary, error) {
	sum := Summary{Agents: cfg.Count}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	}
	have, err := LoadCredentials(cfg.CredentialsFile)
	if err != nil {
		return sum, err
	}
	creds, err := enrollMissing(ctx, cfg, have)
	sum.Enrolled = max(len(creds)-len(have), 0)
	if err != nil {
		return sum, fmt.Errorf("enrollment: %w", err)
	}
	if cfg.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.Duration)
		defer cancel()
	}
	st := newStats(cfg.Count)
	group := agent.NewHeartbeatGroup(cfg.HeartbeatTick)
	groupCtx, stopGroup := context.WithCancel(context.Background())
	defer stopGroup()
	go group.Run(groupCtx)
	statsDone := make(chan struct{})
	go func() {
		defer close(statsDone)
		st.report(ctx, cfg.Stats, cfg.StatsInterval)
	}()
	runAll(ctx, cfg, creds[:cfg.Count], group, st)
	<-statsDone
	return st.summary(sum), nil
}

// runAll starts the agents, paced at cfg.ConnectRate, and waits for all of
// them to stop.
func runAll(ctx context.Context, cfg Config, creds []Credential, group *agent.HeartbeatGroup, st *stats) {
	var wg sync.WaitGroup
	start := time.Now()
	for i, c := range creds {
		if cfg.ConnectRate > 0 {
			at := start.Add(time.Duration(float64(i) / cfg.ConnectRate * float64(time.Second)))
			if !sleepUntil(ctx, at) {
				break
			}
		}
		a, err := agent.New(agentConfig(ctx, cfg, c, group, st))
		if err != nil {
			cfg.Logger.Error("simulated agent not started", "name", c.Name, "err", err)
			continue
		}
		wg.Go(func() {
			if err := a.Run(ctx); err != nil {
				st.stopped.Add(1)
				cfg.Logger.Warn("simulated agent stopped", "name", c.Name, "err", err)
			}
		})
	}
	wg.Wait()
}

// agentConfig configures one simulated agent. Disconnections caused by the
// end of the simulation are not counted.
func agentConfig(ctx context.Context, cfg Config, c Credential, group *agent.HeartbeatGroup, st *stats) agent.Config {
	connectedBefore := false // only touched from this agent's Run goroutine
	return agent.Config{
		ServerURL:  cfg.Server,
		Credential: c.Credential,
		Facts:      agentproto.Hello{Hostname: c.Name, OS: "sim", Arch: "sim", Version: "sim"},
		Allowed:    cfg.Allowed,
		Runner:     st.runner,
		Logger:     cfg.Logger,
		MinBackoff: cfg.MinBackoff, MaxBackoff: cfg.MaxBackoff,
		HTTPClient:        cfg.HTTPClient,
		Heartbeats:        group,
		HeartbeatInterval: cfg.HeartbeatInterval,
		OnConnected: func(agentproto.Welcome) {
			st.connected(connectedBefore)
			connectedBefore = true
		},
		OnDisconnected: func(error) {
			if ctx.Err() == nil {
				st.disconnected()
			}
		},
	}
}

func sleepUntil(ctx context.Context, at time.Time) bool {
	d := time.Until(at)
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
