package supervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"

	"github.com/home-console/client-manager/internal/manifest"
	"github.com/home-console/client-manager/internal/pluginstate"
)

// Group is the set of supervisors of one plugins directory.
type Group struct {
	log    *slog.Logger
	order  []string // start order
	byName map[string]*Supervisor
	names  []string // sorted
	wg     sync.WaitGroup
}

// NewGroup returns a supervisor for every plugin of set, none running yet.
func NewGroup(set *manifest.Set, opts Options, log *slog.Logger) *Group {
	g := &Group{log: log, order: set.StartOrder(), byName: make(map[string]*Supervisor)}
	for _, e := range set.Entries {
		g.byName[e.Name] = New(e, opts, log, g.state)
		g.names = append(g.names, e.Name)
	}
	slices.Sort(g.names)
	return g
}

func (g *Group) state(name string) (pluginstate.State, bool) {
	s, ok := g.byName[name]
	if !ok {
		return "", false
	}
	return s.Snapshot().State, true
}

// Get returns the supervisor of the named plugin.
func (g *Group) Get(name string) (*Supervisor, error) {
	s, ok := g.byName[name]
	if !ok {
		return nil, fmt.Errorf("%w %q", pluginstate.ErrUnknownPlugin, name)
	}
	return s, nil
}

// List returns a snapshot of every plugin, sorted by name.
func (g *Group) List() []pluginstate.Snapshot {
	out := make([]pluginstate.Snapshot, 0, len(g.names))
	for _, n := range g.names {
		out = append(out, g.byName[n].Snapshot())
	}
	return out
}

// Run starts every supervisor's loop; they stop when ctx ends. Wait
// waits for them.
func (g *Group) Run(ctx context.Context) {
	for _, s := range g.byName {
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			s.Run(ctx)
		}()
	}
}

// Wait blocks until every loop started by Run has returned.
func (g *Group) Wait() { g.wg.Wait() }

// StartAll starts the enabled, valid plugins that are stopped, each as
// soon as its dependencies run: plugins with no dependency path between
// them start in parallel, so one that hangs delays only its dependents.
// While a plugin waits it is starting, with a reason naming the
// dependency; a plugin whose dependency will not come up (it is stopped
// or failed) stays stopped with the reason as its last error. StartAll
// returns when every plugin is running or has failed, or ctx ends (the
// plugins still waiting are then stopped).
func (g *Group) StartAll(ctx context.Context) {
	var wg sync.WaitGroup
	for _, name := range g.order { // dependencies first: they are held before their dependents look
		s := g.byName[name]
		if s.hold() {
			wg.Go(func() { g.startWhenReady(ctx, s) })
		}
	}
	wg.Wait()
}

// startWhenReady waits until every dependency of the held plugin s runs,
// then starts it.
func (g *Group) startWhenReady(ctx context.Context, s *Supervisor) {
	for {
		dep, st, depChanged := g.pending(s)
		if dep == "" {
			break
		}
		if st == pluginstate.StateStopped || st == pluginstate.StateFailed || st.Static() {
			why := "dependency " + dep + " is " + string(st) + ", not running"
			s.unhold("not started: " + why)
			g.log.Warn("plugin not started", "plugin", s.Name(), "reason", why)
			return
		}
		changed, ok := s.holdReason("waiting for dependency " + dep + " (" + string(st) + ")")
		if !ok {
			return
		}
		select {
		case <-ctx.Done():
			s.unhold("")
			return
		case <-depChanged:
		case <-changed:
		}
	}
	snap, err := s.startHeld(ctx)
	if ctx.Err() != nil {
		return
	}
	if err != nil || snap.State != pluginstate.StateRunning {
		g.log.Error("plugin did not start", "plugin", s.Name(), "state", snap.State, "err", err, "last_error", snap.LastError)
	}
}

// pending returns the first dependency of s that is not running, its
// state and a channel closed when that state changes; dep is "" when
// every dependency runs. A dependency the group does not know is shown
// as invalid (discovery blocks such a plugin anyway).
func (g *Group) pending(s *Supervisor) (dep string, st pluginstate.State, changed <-chan struct{}) {
	for _, d := range s.man.Dependencies {
		ds, ok := g.byName[d]
		if !ok {
			return d, pluginstate.StateInvalid, nil
		}
		if st, changed := ds.watchState(); st != pluginstate.StateRunning {
			return d, st, changed
		}
	}
	return "", "", nil
}

// Detach makes every supervisor leave its running plugin process running
// once the context given to Run ends; see [Supervisor.Detach].
func (g *Group) Detach() {
	for _, s := range g.byName {
		s.Detach()
	}
}

// StopAll stops every plugin in reverse dependency order, each within its
// stop timeout. When ctx ends, the plugins still running are killed with
// their process groups at once.
func (g *Group) StopAll(ctx context.Context) {
	for _, name := range slices.Backward(g.order) {
		s := g.byName[name]
		_, err := s.Stop(ctx)
		var te *pluginstate.TransitionError
		if err != nil && !errors.As(err, &te) {
			g.log.Error("stopping plugin", "plugin", name, "err", err)
		}
	}
}

// Snapshot returns the state of the named plugin, or an error matching
// [pluginstate.ErrUnknownPlugin].
func (g *Group) Snapshot(name string) (pluginstate.Snapshot, error) {
	s, err := g.Get(name)
	if err != nil {
		return pluginstate.Snapshot{}, err
	}
	return s.Snapshot(), nil
}

// Start starts the named plugin; see [Supervisor.Start].
func (g *Group) Start(ctx context.Context, name string) (pluginstate.Snapshot, error) {
	s, err := g.Get(name)
	if err != nil {
		return pluginstate.Snapshot{}, err
	}
	return s.Start(ctx)
}

// Stop stops the named plugin; see [Supervisor.Stop].
func (g *Group) Stop(ctx context.Context, name string) (pluginstate.Snapshot, error) {
	s, err := g.Get(name)
	if err != nil {
		return pluginstate.Snapshot{}, err
	}
	return s.Stop(ctx)
}

// Restart restarts the named plugin; see [Supervisor.Restart].
func (g *Group) Restart(ctx context.Context, name string) (pluginstate.Snapshot, error) {
	s, err := g.Get(name)
	if err != nil {
		return pluginstate.Snapshot{}, err
	}
	return s.Restart(ctx)
}
