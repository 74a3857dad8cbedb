package supervisor

import (
	"context"

	"github.com/home-console/client-manager/internal/pluginstate"
)

// hold puts a stopped plugin in the starting state, waiting for its
// dependencies (reason says which). It returns false, doing nothing, if
// the plugin is not stopped or an operator already started it.
func (s *Supervisor) hold() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.snap.State != pluginstate.StateStopped || s.wanted {
		return false
	}
	s.waiting = true
	s.snap.State, s.snap.Reason, s.snap.LastError = pluginstate.StateStarting, "waiting for its dependencies", ""
	s.notifyLocked()
	return true
}

// holdReason shows reason while the plugin is held, and returns a
// channel closed at its next change; ok is false once the plugin is no
// longer held (an operator stopped it).
func (s *Supervisor) holdReason(reason string) (changed <-chan struct{}, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.waiting {
		return nil, false
	}
	if s.snap.Reason != reason {
		s.log.Info("plugin waits for a dependency", "reason", reason)
		s.snap.Reason = reason
		s.notifyLocked()
	}
	return s.changed, true
}

// unhold ends the hold without starting: the plugin is stopped, with
// lastError saying why.
func (s *Supervisor) unhold(lastError string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.waiting {
		return
	}
	s.waiting = false
	s.snap.State, s.snap.Reason, s.snap.LastError = pluginstate.StateStopped, "", lastError
	s.notifyLocked()
}

// startHeld starts a held plugin once its dependencies run, and waits as
// Start does. A plugin no longer held is left alone.
func (s *Supervisor) startHeld(ctx context.Context) (pluginstate.Snapshot, error) {
	s.mu.Lock()
	if !s.waiting {
		s.mu.Unlock()
		return s.Snapshot(), nil
	}
	s.waiting, s.wanted, s.restartTimes = false, true, nil
	s.snap.Reason = ""
	s.notifyLocked()
	s.wakeRun()
	s.mu.Unlock()
	return s.waitFor(ctx, settled)
}
