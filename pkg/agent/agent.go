package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/home-console/client-manager/internal/ratelimit"
	"github.com/home-console/client-manager/pkg/agent/files"
	"github.com/home-console/client-manager/pkg/agent/terminal"
	"github.com/home-console/client-manager/pkg/agentproto"
)

// Defaults of [Config] fields left zero.
const (
	DefaultMinBackoff     = time.Second
	DefaultMaxBackoff     = 30 * time.Second
	DefaultStableAfter    = 30 * time.Second
	DefaultMaxOutputBytes = 1 << 20
	DefaultCommandTimeout = time.Minute
	DefaultMaxConcurrent  = 16
)

// Config configures an [Agent]. Only ServerURL and Credential are required.
type Config struct {
	// ServerURL is the client manager's base URL: http://, https://, ws://
	// or wss://, optionally with a path prefix (a reverse proxy's); the
	// agent connects to ServerURL + agentproto.PathWebSocket.
	ServerURL string
	// Credential is the agent credential from [Enroll].
	Credential string
	// Facts describe the host in the hello message. Empty Hostname, OS and
	// Arch are filled in from the running system; Allowed and Running are
	// always set by the agent.
	Facts agentproto.Hello
	// Allowed are the executables the server may run (see [AllowList]).
	// Empty means every command is rejected.
	Allowed []string
	// Runner runs allowed commands; nil means [ExecRunner].
	Runner Runner
	// Logger receives the agent's logs; nil discards them.
	Logger *slog.Logger
	// JournalPath, if set, is a file (created with mode 0600) where the
	// agent records the commands it starts, their results until the server
	// acknowledges them, and the ids of the last acknowledged ones, so that
	// a new agent process neither runs a command again nor loses a result.
	// A command that was running when the previous process died is reported
	// failed, not run again. A journal belongs to one agent: Run holds an
	// exclusive lock on JournalPath+".lock" (flock, dropped by the kernel if
	// the process dies) while it runs, and fails with [ErrJournalInUse] if
	// another agent holds it. Give each agent identity its own path. Empty
	// means the agent remembers all this in memory only.
	JournalPath string

	// MinBackoff and MaxBackoff bound the reconnect delay: the n-th
	// consecutive retry waits a random time in [0, min(MaxBackoff,
	// MinBackoff*2^n)]. StableAfter is how long a connection must have
	// lasted for the next retry to start from MinBackoff again. A clean
	// close by the server (1001 going away, 1012 service restart) always
	// starts over, after a random wait in [0, min(MinBackoff, 1s)]; see
	// docs/protocol.md, "Reconnecting".
	MinBackoff, MaxBackoff, StableAfter time.Duration

	// HTTPClient makes the WebSocket upgrade request; nil means a client
	// using TLSConfig (if set) and the environment's proxy settings.
	HTTPClient *http.Client
	// TLSConfig is used when HTTPClient is nil, e.g. for a private CA.
	TLSConfig *tls.Config

	// MaxOutputBytes limits a command's output when the server's welcome
	// does not; zero means DefaultMaxOutputBytes.
	MaxOutputBytes int64
	// DefaultTimeout bounds commands that arrive without a timeout; zero
	// means DefaultCommandTimeout.
	DefaultTimeout time.Duration
	// MaxConcurrent bounds the commands running at once; beyond it a
	// command fails at once with an explanation. Zero means
	// DefaultMaxConcurrent.
	MaxConcurrent int

	// Terminal is the agent's terminal policy (see package terminal): with
	// Terminal.Enabled the server may open terminal streams running
	// Terminal.Shell; otherwise they are refused with terminal_disabled.
	Terminal terminal.Config
	// TerminalStatePath, if set, is a file (mode 0600) where the agent
	// records its running terminal sessions (shell pid and start time), so
	// that after the agent was killed its next process, at the start of
	// Run, kills what is left of them (see terminal.KillOrphan). Give it
	// the same lifetime and owner as JournalPath. Empty: nothing is
	// recorded; the kernel's hangup of the terminals is all that ends them.
	TerminalStatePath string
	// Files is the agent's file transfer policy (see package files): the
	// roots under which the server may read, write, stat and list. With
	// no root every file stream is refused with not_allowed.
	Files files.Config

	// Heartbeats, if set, drives this agent's heartbeats instead of a
	// timer of its own (many agents in one process); it must be running.
	Heartbeats *HeartbeatGroup
	// HeartbeatInterval overrides the server's heartbeat interval, for
	// load tests only; zero (the normal case) uses the server's.
	HeartbeatInterval time.Duration

	// OnConnected, if set, is called with the server's welcome each time
	// a connection is established. OnDisconnected, if set, is called with
	// the cause each time an established connection ends. Both are called
	// from the goroutine running [Agent.Run] and must not block for long.
	OnConnected    func(agentproto.Welcome)
	OnDisconnected func(error)
}

// Agent is a remote agent's connection to the client manager. Create it
// with [New] and call [Agent.Run]. Its methods are safe for concurrent use.
type Agent struct {
	cfg        Config
	wsURL      string
	allow      AllowList
	runner     Runner
	log        *slog.Logger
	httpClient *http.Client
	facts      agentproto.Hello

	started atomic.Bool
	current atomic.Pointer[session]
	// randN draws reconnect jitter; nil means math/rand (tests replace it).
	randN func(n int64) int64

	// cmdCtx is the parent of every command's context; cancelled when Run
	// returns. Set once at the start of Run, before any session.
	cmdCtx context.Context
	cmdWG  sync.WaitGroup

	// outputBudget bounds command_output messages per second, well below
	// the server's inbound message rate limit.
	outputBudget *ratelimit.Bucket

	// journal records the commands' progress; set before any session.
	journal commandJournal

	// term runs terminal sessions, roots serves file streams; both are
	// closed when Run returns. termState records the sessions running.
	term      *terminal.Manager
	roots     *files.Roots
	termState *terminalState
	streamWG  sync.WaitGroup // stream handlers
	// termFrames bounds the frames of terminal output per second.
	termFrames *ratelimit.Bucket

	mu      sync.Mutex
	running map[string]context.CancelCauseFunc
	results resultCache
}

// New validates cfg, fills in its defaults and returns an Agent. It does
// not connect; [Agent.Run] does. It resolves Terminal.User and opens the
// Files roots (released when Run returns), so that a misconfigured agent
// fails here.
func New(cfg Config) (*Agent, error) {
	wsURL, err := endpointURL(cfg.ServerURL, agentproto.PathWebSocket)
	if err != nil {
		return nil, err
	}
	if _, _, err := agentproto.ParseCredential(cfg.Credential); err != nil {
		return nil, fmt.Errorf("agent config: %w", err)
	}
	allow, err := NewAllowList(cfg.Allowed...)
	if err != nil {
		return nil, fmt.Errorf("agent config: %w", err)
	}
	setDefaults(&cfg)
	if cfg.MinBackoff > cfg.MaxBackoff {
		return nil, fmt.Errorf("agent config: MinBackoff %s exceeds MaxBackoff %s", cfg.MinBackoff, cfg.MaxBackoff)
	}
	term, err := terminal.New(cfg.Terminal)
	if err != nil {
		return nil, fmt.Errorf("agent config: %w", err)
	}
	roots, err := files.New(cfg.Files)
	if err != nil {
		return nil, fmt.Errorf("agent config: %w", err)
	}
	a := &Agent{
		cfg:          cfg,
		term:         term,
		roots:        roots,
		termState:    &terminalState{path: cfg.TerminalStatePath, log: cfg.Logger},
		wsURL:        wsURL,
		allow:        allow,
		runner:       cfg.Runner,
		log:          cfg.Logger,
		httpClient:   cfg.HTTPClient,
		facts:        hostFacts(cfg.Facts),
		running:      make(map[string]context.CancelCauseFunc),
		journal:      memoryOnly{},
		outputBudget: ratelimit.NewBucket(outputMessagesPerSecond, outputMessagesPerSecond),
		termFrames:   ratelimit.NewBucket(terminalFramesPerSecond, terminalFramesPerSecond),
	}
	a.facts.Allowed = a.allow.Names()
	a.facts.Features = features(cfg)
	return a, nil
}

// features lists what the agent supports and allows, for its hello.
func features(cfg Config) []string {
	f := []string{agentproto.FeatureStreams}
	if cfg.Terminal.Enabled {
		f = append(f, agentproto.FeatureTerminal)
	}
	if len(cfg.Files.Roots) > 0 {
		f = append(f, agentproto.FeatureFiles)
	}
	return f
}

func setDefaults(cfg *Config) {
	if cfg.Runner == nil {
		cfg.Runner = ExecRunner{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.HTTPClient == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = cfg.TLSConfig
		cfg.HTTPClient = &http.Client{Transport: tr}
	}
	setDefault(&cfg.MinBackoff, DefaultMinBackoff)
	setDefault(&cfg.MaxBackoff, DefaultMaxBackoff)
	setDefault(&cfg.StableAfter, DefaultStableAfter)
	setDefault(&cfg.MaxOutputBytes, DefaultMaxOutputBytes)
	setDefault(&cfg.DefaultTimeout, DefaultCommandTimeout)
	setDefault(&cfg.MaxConcurrent, DefaultMaxConcurrent)
}

func setDefault[T time.Duration | int64 | int](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

// hostFacts fills the empty host facts from the running system.
func hostFacts(f agentproto.Hello) agentproto.Hello {
	if f.Hostname == "" {
		f.Hostname, _ = os.Hostname()
	}
	if f.OS == "" {
		f.OS = runtime.GOOS
	}
	if f.Arch == "" {
		f.Arch = runtime.GOARCH
	}
	f.Running = nil
	return f
}

// Run connects to the server and serves it until ctx is done, reconnecting
// with backoff whenever the connection fails or ends. It blocks. When ctx is
// done it closes the connection with status 1000, stops running commands
// and returns nil. It returns early only with an error wrapping
// [ErrRevoked] (the server closed with agentproto.CloseRevoked) or
// [ErrUnauthorized] (the server refused the credential), as retrying with
// the same credential cannot succeed, or, before connecting, if another
// agent holds the journal ([ErrJournalInUse]) or it cannot read or rewrite
// the journal ([Config.JournalPath]) or the terminal state
// ([Config.TerminalStatePath]). When it returns, every terminal session
// has been ended. Run may be called only once.
func (a *Agent) Run(ctx context.Context) error {
	if !a.started.CompareAndSwap(false, true) {
		return errors.New("agent: Run called more than once")
	}
	release, err := a.prepare()
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	defer release() // after the commands and sessions have stopped
	cmdCtx, stopCommands := context.WithCancelCause(context.WithoutCancel(ctx))
	a.cmdCtx = cmdCtx
	defer func() {
		stopCommands(errAgentStopped)
		a.cmdWG.Wait()
		_ = a.term.Close()
		a.streamWG.Wait()
	}()
	bo := backoff{min: a.cfg.MinBackoff, max: a.cfg.MaxBackoff, stableAfter: a.cfg.StableAfter, randN: a.randN}
	for {
		lasted, err := a.connectOnce(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, ErrRevoked) || errors.Is(err, ErrUnauthorized) {
			a.log.Error("agent stopped: the server no longer accepts its credential", "err", err)
			return err
		}
		delay := bo.delay(lasted, err)
		a.log.Warn("not connected; retrying", "err", err, "retry_in", delay.Round(time.Millisecond))
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// prepare replays the journal and ends the terminal sessions a previous
// agent process left; release closes the journal and the files roots.
func (a *Agent) prepare() (release func(), err error) {
	var j *journal
	if a.cfg.JournalPath != "" {
		if j, err = a.replayJournal(a.cfg.JournalPath); err != nil {
			_ = a.roots.Close()
			return nil, err
		}
	}
	release = func() {
		_ = a.roots.Close()
		if j != nil {
			j.Close()
		}
	}
	if err := a.termState.cleanup(); err != nil {
		release()
		return nil, err
	}
	return release, nil
}

// connectOnce holds one connection until it ends. lasted is how long it was
// established (zero if the handshake failed).
func (a *Agent) connectOnce(ctx context.Context) (lasted time.Duration, err error) {
	s, err := a.handshake(ctx)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	a.log.Info("connected", "agent_id", s.welcome.AgentID, "server_version", s.welcome.ServerVersion)
	if a.cfg.OnConnected != nil {
		a.cfg.OnConnected(s.welcome)
	}
	err = s.serve(ctx)
	if a.cfg.OnDisconnected != nil {
		a.cfg.OnDisconnected(err)
	}
	return time.Since(start), err
}

// replayJournal opens the journal at path, loads what it remembers and
// makes the agent record into it.
func (a *Agent) replayJournal(path string) (*journal, error) {
	j, err := openJournal(path, a.log)
	if err != nil {
		return nil, err
	}
	now := time.Now().UTC()
	acked, unacked, err := j.Replay(now)
	if err != nil {
		j.Close()
		return nil, err
	}
	a.mu.Lock()
	for _, id := range acked {
		a.results.add(agentproto.CommandResult{CommandID: id, Status: agentproto.ResultFailed, ExitCode: -1,
			Error: ackedBeforeError, StartedAt: now, FinishedAt: now}, now)
		a.results.ack(id)
	}
	for _, res := range unacked {
		a.storeResultLocked(res)
	}
	a.mu.Unlock()
	a.journal = j
	a.log.Info("journal replayed", "path", path, "unacked_results", len(unacked), "acked_ids", len(acked))
	return j, nil
}
