package supervisor

import (
	"context"
	"fmt"
	"time"

	"github.com/home-console/client-manager/internal/pluginstate"
)

// update applies f to the snapshot under the lock and wakes every waiter.
func (s *Supervisor) update(f func(*pluginstate.Snapshot)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(&s.snap)
	s.notifyLocked()
}

// notifyLocked wakes every waiter on the snapshot. The caller holds s.mu.
func (s *Supervisor) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// watchState returns the current state and a channel closed at the next
// change.
func (s *Supervisor) watchState() (pluginstate.State, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.snap.State, s.changed
}

// setState moves to state st, recording reason.
func (s *Supervisor) setState(st pluginstate.State, reason string) {
	s.update(func(sn *pluginstate.Snapshot) {
		if st != sn.State {
			s.log.Info("plugin state", "state", st, "from", sn.State, "reason", reason)
		}
		sn.State, sn.Reason = st, reason
		if st != pluginstate.StateRunning {
			sn.StartedAt = time.Time{}
		}
	})
}

// Snapshot returns a copy of the plugin's current state.
func (s *Supervisor) Snapshot() pluginstate.Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.snap.Clone()
}

// waitFor blocks until the state satisfies done or ctx ends.
func (s *Supervisor) waitFor(ctx context.Context, done func(pluginstate.State) bool) (pluginstate.Snapshot, error) {
	for {
		s.mu.Lock()
		snap, changed := s.snap.Clone(), s.changed
		s.mu.Unlock()
		if done(snap.State) {
			return snap, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return snap, fmt.Errorf("plugin %s is still %s: %w", snap.Name, snap.State, ctx.Err())
		}
	}
}
