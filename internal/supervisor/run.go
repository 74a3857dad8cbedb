package supervisor

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/home-console/client-manager/internal/manifest"
	"github.com/home-console/client-manager/internal/pluginstate"
)

// errStopRequested ends a launch that an operator's stop overtook.
var errStopRequested = errors.New("stop requested")

// ending is how one run of the plugin ended.
type ending struct {
	exit *pluginstate.Exit
	// err is why the run ended against the operator's wish; nil for a
	// requested stop or a clean exit.
	err error
	// stopped is set when the run ended because a stop was requested.
	stopped bool
	// detached is set when the runtime left the process running.
	detached bool
}

// failure reports whether the run counts as a failure for the
// on-failure and never policies.
func (e ending) failure() bool {
	return e.err != nil || (e.exit != nil && e.exit.Code != 0)
}

// serve launches the plugin and keeps it running by its restart policy
// until a stop is requested, the policy gives up, or ctx ends.
func (s *Supervisor) serve(ctx context.Context) {
	for {
		end := s.runOnce(ctx)
		if end.detached {
			return
		}
		s.mu.Lock()
		s.proxyToken = ""
		s.mu.Unlock()
		s.update(func(sn *pluginstate.Snapshot) {
			// The process is gone: never show it running without a pid
			// while the policy decides what comes next.
			if sn.State == pluginstate.StateRunning || sn.State == pluginstate.StateStarting {
				sn.State, sn.StartedAt = pluginstate.StateRestarting, time.Time{}
			}
			sn.PID, sn.InstanceID, sn.HTTPAddress, sn.Health = 0, "", "", pluginstate.Health{}
			if end.exit != nil {
				sn.LastExit = end.exit
			}
			if end.err != nil {
				sn.LastError = end.err.Error()
			}
		})
		if end.stopped || !s.wantsRunning() || ctx.Err() != nil {
			s.setState(pluginstate.StateStopped, "")
			return
		}
		delay, reason, again := s.planRestart(end)
		if !again {
			s.mu.Lock()
			s.wanted = false
			s.mu.Unlock()
			st := pluginstate.StateStopped
			if end.failure() {
				st = pluginstate.StateFailed
			}
			s.setState(st, reason)
			return
		}
		if !s.backoff(ctx, delay, reason) {
			s.setState(pluginstate.StateStopped, "")
			return
		}
	}
}

// runOnce starts one instance and watches it until it ends.
func (s *Supervisor) runOnce(ctx context.Context) ending {
	inst, err := s.startInstance(ctx)
	if err != nil {
		end := ending{err: err}
		if inst != nil {
			end.exit = s.reap(inst)
		}
		if errors.Is(err, errStopRequested) {
			end.err, end.stopped = nil, true
		}
		return end
	}
	return s.watch(ctx, inst)
}

// startInstance adopts or launches the plugin, connects to it and waits
// until it is ready, within the manifest's start_timeout. On error the returned
// instance, if any, still has to be reaped.
func (s *Supervisor) startInstance(ctx context.Context) (*instance, error) {
	actx, cancel := context.WithTimeoutCause(ctx, s.startTimeout(),
		fmt.Errorf("start_timeout of %s exceeded", s.startTimeout()))
	defer cancel()
	s.mu.Lock()
	s.cancelAttempt = cancel
	wanted := s.wanted
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.cancelAttempt = nil
		s.mu.Unlock()
	}()
	if !wanted {
		return nil, errStopRequested
	}
	s.setState(pluginstate.StateStarting, "")
	inst, err := s.obtain(actx)
	if err == nil {
		stop := context.AfterFunc(actx, inst.kill)
		err = s.begin(actx, inst)
		stop()
	}
	if err != nil {
		if inst != nil {
			inst.kill() // before go-plugin's Kill in reap can shut it down gracefully
		}
		if !s.wantsRunning() {
			return inst, errStopRequested
		}
		return inst, err
	}
	s.running(inst)
	return inst, nil
}

// obtain returns a connected, described plugin process: the one an
// earlier runtime recorded if it can be adopted, else a new one.
func (s *Supervisor) obtain(ctx context.Context) (*instance, error) {
	inst := s.adopt(ctx)
	if inst == nil {
		var err error
		if inst, err = s.launch(ctx); err != nil {
			return inst, err
		}
	} else {
		s.mu.Lock()
		s.restartTimes = inst.rec.RestartTimes
		s.mu.Unlock()
		s.update(func(sn *pluginstate.Snapshot) { sn.Restarts = max(sn.Restarts, inst.rec.Restarts) })
	}
	s.update(func(sn *pluginstate.Snapshot) { sn.PID = inst.pid })
	if inst.orphan != nil {
		return inst, nil
	}
	stop := context.AfterFunc(ctx, inst.kill)
	defer stop()
	if err := s.connect(ctx, inst); err != nil {
		return inst, err
	}
	s.saveRecord(inst, func(r *record) { r.InstanceID = inst.desc.InstanceID })
	return inst, nil
}

// running records that inst is ready and serving.
func (s *Supervisor) running(inst *instance) {
	now := time.Now().UTC()
	if inst.orphan != nil && !inst.rec.StartedAt.IsZero() {
		now = inst.rec.StartedAt
	}
	s.mu.Lock()
	times := slices.Clone(s.restartTimes)
	s.proxyToken = inst.rec.ProxyToken
	s.mu.Unlock()
	s.update(func(sn *pluginstate.Snapshot) {
		sn.InstanceID, sn.StartedAt = inst.desc.InstanceID, now
		sn.State, sn.Reason = pluginstate.StateRunning, ""
	})
	snap := s.Snapshot()
	s.saveRecord(inst, func(r *record) {
		r.StartedAt, r.Restarts, r.RestartTimes = now, snap.Restarts, times
	})
	s.log.Info("plugin running", "pid", inst.pid, "http_address", inst.addr, "instance_id", inst.desc.InstanceID,
		"adopted", inst.orphan != nil)
}

// planRestart applies the restart policy to a run that ended on its own.
// It returns the delay before the next launch, or again=false and the
// reason the plugin stays down.
func (s *Supervisor) planRestart(end ending) (delay time.Duration, reason string, again bool) {
	pol := s.man.Restart
	what := "exited cleanly"
	if end.err != nil {
		what = end.err.Error()
	} else if end.exit != nil {
		what = end.exit.String()
	}
	switch {
	case pol.Policy == manifest.PolicyNever:
		return 0, "restart policy never: " + what, false
	case pol.Policy == manifest.PolicyOnFailure && !end.failure():
		return 0, "restart policy on-failure: " + what, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	recent := s.restartTimes[:0]
	for _, t := range s.restartTimes {
		if now.Sub(t) < pol.Window {
			recent = append(recent, t)
		}
	}
	s.restartTimes = recent
	if len(recent) >= pol.MaxRestarts {
		return 0, fmt.Sprintf("gave up after %d restarts within %s; last: %s", len(recent), pol.Window, what), false
	}
	delay = pol.InitialBackoff
	for range recent {
		if delay *= 2; delay >= pol.MaxBackoff {
			delay = pol.MaxBackoff
			break
		}
	}
	return delay, what, true
}

// backoff waits delay in the restarting state, then counts the restart.
// It returns false if a stop was requested or ctx ended meanwhile.
func (s *Supervisor) backoff(ctx context.Context, delay time.Duration, reason string) bool {
	s.setState(pluginstate.StateRestarting, reason)
	s.log.Info("restarting plugin", "in", delay, "after", reason)
	t := time.NewTimer(delay)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-s.wake:
			if !s.wantsRunning() {
				return false
			}
		case <-t.C:
			s.mu.Lock()
			s.restartTimes = append(s.restartTimes, time.Now())
			s.mu.Unlock()
			s.update(func(sn *pluginstate.Snapshot) { sn.Restarts++ })
			return true
		}
	}
}
