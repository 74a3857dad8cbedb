// Package supervisor runs plugins as separate OS processes through
// hashicorp/go-plugin and keeps them in the state an operator asked for.
//
// Each plugin has one [Supervisor]: a goroutine ([Supervisor.Run]) that
// launches the process, waits until it is ready (within the manifest's
// start_timeout), watches it (process exit polled every 100 ms, Health RPC
// every 2 s, not ready from the first failed call), restarts it by its
// manifest's restart policy and stops it gracefully, escalating to
// signals for the whole process group. A [Group] holds the supervisors of one plugins
// directory; it starts each plugin once its dependencies run (plugins
// without a dependency path between them in parallel) and stops them in
// reverse dependency order.
//
// Starting a plugin is split in two steps: obtaining a connected,
// described process and bringing the plugin up (Start, readiness). The
// process is either launched or, when the runtime restarted while the
// plugin kept running, adopted: with Options.StateDir set, every running
// process is recorded (go-plugin's reattach data, pid, executable, instance
// id, proxy token) in <StateDir>/plugins/<name>.json, and a later runtime
// re-attaches to it after verifying it is the recorded process.
package supervisor

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/home-console/client-manager/internal/manifest"
	"github.com/home-console/client-manager/internal/pluginstate"
)

// Options tune every supervisor of a runtime. Zero fields take defaults.
type Options struct {
	// HealthInterval is the period of the Health RPC while running
	// (default 2s); each call times out after the same period.
	HealthInterval time.Duration
	// HealthFailures consecutive failed Health RPCs make the supervisor
	// treat the plugin as crashed (default 3).
	HealthFailures int
	// KillGrace is how long a process group gets between SIGTERM and
	// SIGKILL (default 2s).
	KillGrace time.Duration
	// StateDir, if not empty, is where re-attach records are kept
	// (<StateDir>/plugins/<name>.json, mode 0600).
	StateDir string
}

func (o Options) withDefaults() Options {
	if o.HealthInterval <= 0 {
		o.HealthInterval = 2 * time.Second
	}
	if o.HealthFailures <= 0 {
		o.HealthFailures = 3
	}
	if o.KillGrace <= 0 {
		o.KillGrace = 2 * time.Second
	}
	return o
}

// startTimeout bounds one launch (handshake, Start RPC and readiness):
// the manifest's start_timeout, manifest.DefaultStartTimeout if unset.
func (s *Supervisor) startTimeout() time.Duration {
	if s.man.StartTimeout > 0 {
		return s.man.StartTimeout
	}
	return manifest.DefaultStartTimeout
}

// exitPoll is how often a supervisor checks whether its process exited.
const exitPoll = 100 * time.Millisecond

// Supervisor supervises one plugin. Its methods are safe for concurrent
// use; [Supervisor.Run] must be running for Start and Stop to make progress.
type Supervisor struct {
	name string
	man  manifest.Manifest
	opts Options
	log  *slog.Logger
	// depState reports the state of another plugin of the group.
	depState func(name string) (pluginstate.State, bool)
	// wake tells Run that the wanted state changed.
	wake chan struct{}
	// store keeps the re-attach record; nil without a state directory.
	store *stateStore

	mu      sync.Mutex
	snap    pluginstate.Snapshot
	changed chan struct{} // closed and replaced on every update
	wanted  bool          // an operator wants the plugin running
	// waiting is set while the group holds the plugin in the starting
	// state until its dependencies run (see Group.StartAll).
	waiting       bool
	stopCtx       context.Context
	cancelAttempt context.CancelFunc
	restartTimes  []time.Time // restarts within the policy window
	proxyToken    string      // of the running process
	// detach, once set, makes Run leave a running process running when
	// its context ends.
	detach bool
}

// New returns the supervisor of a discovered plugin. depState looks up the
// state of the plugin's dependencies; it may be nil if there are none.
func New(e manifest.Entry, opts Options, log *slog.Logger, depState func(string) (pluginstate.State, bool)) *Supervisor {
	s := &Supervisor{
		name:     e.Name,
		man:      e.Manifest,
		opts:     opts.withDefaults(),
		log:      log.With("plugin", e.Name),
		depState: depState,
		wake:     make(chan struct{}, 1),
		store:    newStateStore(opts.StateDir),
		changed:  make(chan struct{}),
		snap: pluginstate.Snapshot{
			Name:         e.Name,
			Version:      e.Manifest.Version,
			Description:  e.Manifest.Description,
			Dependencies: slices.Clone(e.Manifest.Dependencies),
			ManifestPath: e.Manifest.Path,
			Mount:        e.Manifest.Mount,
			State:        pluginstate.StateStopped,
			Reason:       e.Reason,
		},
	}
	if s.snap.ManifestPath == "" {
		s.snap.ManifestPath = filepath.Join(e.Dir, manifest.FileName)
	}
	switch e.Status {
	case manifest.StatusInvalid:
		s.snap.State = pluginstate.StateInvalid
	case manifest.StatusBlocked:
		s.snap.State = pluginstate.StateBlocked
	case manifest.StatusDisabled:
		s.snap.State = pluginstate.StateDisabled
	}
	return s
}

// Name returns the plugin's name.
func (s *Supervisor) Name() string { return s.name }

// Upstream returns where the plugin serves HTTP (an address to dial) and
// the secret its proxied requests must carry. ok is false unless the
// plugin is running and serves HTTP.
func (s *Supervisor) Upstream() (addr, token string, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.snap.State != pluginstate.StateRunning || s.snap.HTTPAddress == "" {
		return "", "", false
	}
	return dialable(s.snap.HTTPAddress), s.proxyToken, true
}

// Detach makes Run, once its context ends, leave the plugin process
// running (and its re-attach record in place) if it is running, so that
// the next runtime re-attaches to it. A process still starting is killed
// as usual.
func (s *Supervisor) Detach() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.detach = true
}

// detaching reports whether Detach was called.
func (s *Supervisor) detaching() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.detach
}

// Start starts a stopped or failed plugin and waits until it is running or
// has failed (including restarts made by its policy), or ctx ends. It
// returns a *pluginstate.TransitionError if the plugin cannot be started now.
func (s *Supervisor) Start(ctx context.Context) (pluginstate.Snapshot, error) {
	if err := s.requestStart(); err != nil {
		return s.Snapshot(), err
	}
	return s.waitFor(ctx, settled)
}

// settled reports whether a start has come to an outcome: the plugin
// runs, has failed, or is stopped.
func settled(st pluginstate.State) bool {
	return st == pluginstate.StateRunning || st == pluginstate.StateFailed || st == pluginstate.StateStopped
}

// Stop stops the plugin gracefully and waits until it is stopped: Stop
// RPC, then go-plugin's shutdown, then SIGTERM and SIGKILL to the process
// group once the manifest's stop_timeout has passed. If ctx ends first the
// process group is killed at once. A stopped plugin gives a
// *pluginstate.TransitionError.
func (s *Supervisor) Stop(ctx context.Context) (pluginstate.Snapshot, error) {
	if err := s.requestStop(ctx); err != nil {
		return s.Snapshot(), err
	}
	return s.waitFor(context.WithoutCancel(ctx), func(st pluginstate.State) bool {
		return st == pluginstate.StateStopped || st == pluginstate.StateFailed
	})
}

// Restart stops the plugin if it runs, then starts it.
func (s *Supervisor) Restart(ctx context.Context) (pluginstate.Snapshot, error) {
	_, err := s.Stop(ctx)
	var te *pluginstate.TransitionError
	if err != nil && (!errors.As(err, &te) || te.State.Static()) {
		return s.Snapshot(), err
	}
	return s.Start(ctx)
}

// requestStart records that an operator wants the plugin running and
// wakes Run.
func (s *Supervisor) requestStart() error {
	blocker := s.unmetDependency()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.checkTransition(true, blocker); err != nil {
		return err
	}
	s.wanted = true
	s.restartTimes = nil
	s.snap.State, s.snap.Reason, s.snap.LastError = pluginstate.StateStarting, "", ""
	s.notifyLocked()
	s.wakeRun()
	return nil
}

// requestStop records that an operator wants the plugin stopped, within
// ctx, cancels a launch in progress and wakes Run.
func (s *Supervisor) requestStop(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.checkTransition(false, ""); err != nil {
		return err
	}
	s.wanted, s.waiting = false, false
	s.stopCtx = ctx
	if s.cancelAttempt != nil {
		s.cancelAttempt()
	}
	s.wakeRun()
	return nil
}

// wakeRun tells Run that the wanted state changed.
func (s *Supervisor) wakeRun() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// checkTransition tells whether the wished change applies to the current
// state. The caller holds s.mu.
func (s *Supervisor) checkTransition(up bool, blocker string) error {
	st := s.snap.State
	fail := func(reason string) error {
		return &pluginstate.TransitionError{Plugin: s.snap.Name, State: st, Reason: reason}
	}
	switch {
	case st.Static():
		return fail(s.snap.Reason)
	case up && st != pluginstate.StateStopped && st != pluginstate.StateFailed:
		return fail("only a stopped or failed plugin can be started")
	case up && blocker != "":
		return fail(blocker)
	case !up && (st == pluginstate.StateStopped || st == pluginstate.StateFailed):
		return fail("it is not running")
	}
	return nil
}

// unmetDependency returns why the plugin's dependencies keep it from
// starting, "" if they are all running.
func (s *Supervisor) unmetDependency() string {
	for _, d := range s.man.Dependencies {
		st, ok := s.depState(d)
		if !ok {
			return "depends on unknown plugin " + d
		}
		if st != pluginstate.StateRunning {
			return "dependency " + d + " is " + string(st) + ", not running"
		}
	}
	return ""
}

// wantsRunning reports the operator's wish.
func (s *Supervisor) wantsRunning() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.wanted
}

// stopContext returns the context bounding the requested stop.
func (s *Supervisor) stopContext() context.Context {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopCtx == nil {
		return context.Background()
	}
	return s.stopCtx
}

// Run supervises the plugin until ctx ends; a plugin still running then is
// killed with its process group. Run returns once the process is gone.
func (s *Supervisor) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		}
		if s.wantsRunning() {
			s.serve(ctx)
			continue
		}
		// A stop overtook a start before the start began.
		s.mu.Lock()
		pending := s.snap.State == pluginstate.StateStarting && !s.waiting
		s.mu.Unlock()
		if pending {
			s.setState(pluginstate.StateStopped, "")
		}
	}
}
