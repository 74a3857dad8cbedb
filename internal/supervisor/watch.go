package supervisor

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/hashicorp/go-plugin"

	"github.com/home-console/client-manager/internal/pluginstate"
	"github.com/home-console/client-manager/pkg/pluginproto"
)

// healthResult is one Health RPC outcome.
type healthResult struct {
	health pluginproto.Health
	err    error
}

// watch follows a running instance until it exits, fails its health
// checks, a stop is requested or ctx ends.
func (s *Supervisor) watch(ctx context.Context, inst *instance) ending {
	pctx, cancel := context.WithCancel(ctx)
	results := make(chan healthResult)
	probed := make(chan struct{})
	go func() {
		defer close(probed)
		s.probe(pctx, inst.plugin, results)
	}()
	defer func() {
		cancel()
		<-probed
	}()
	tick := time.NewTicker(exitPoll)
	defer tick.Stop()
	failures := 0
	for {
		select {
		case <-ctx.Done():
			if s.detaching() {
				s.log.Info("leaving the plugin running for the next runtime", "pid", inst.pid)
				release(inst)
				return ending{detached: true}
			}
			inst.kill()
			return ending{exit: s.reap(inst), err: errors.New("runtime shutting down"), stopped: true}
		case <-s.wake:
			if !s.wantsRunning() {
				return s.terminate(inst)
			}
		case <-tick.C:
			if inst.client.Exited() {
				exit := s.reap(inst)
				return ending{exit: exit, err: unrequestedExit(exit)}
			}
		case r := <-results:
			if r.err == nil {
				failures = 0
				s.update(func(sn *pluginstate.Snapshot) { sn.Health = healthOf(r.health, sn.Health.LastError) })
				continue
			}
			failures++
			s.log.Warn("health check failed", "err", r.err, "consecutive", failures)
			s.update(func(sn *pluginstate.Snapshot) { sn.Health = failedHealth(sn.Health, r.err, failures) })
			if failures >= s.opts.HealthFailures {
				inst.kill()
				return ending{exit: s.reap(inst), err: fmt.Errorf(
					"%d consecutive health checks failed (last: %w); killed its process group", failures, r.err)}
			}
		}
	}
}

// healthOf is the health a successful call reports; lastError is kept
// from earlier failures.
func healthOf(h pluginproto.Health, lastError string) pluginstate.Health {
	return pluginstate.Health{Ready: h.Ready, Status: h.Status, Details: h.Details, LastError: lastError}
}

// failedHealth is h after its failures-th consecutive failed call, with
// err: not ready from the first failure.
func failedHealth(h pluginstate.Health, err error, failures int) pluginstate.Health {
	h.Ready, h.Status, h.LastError, h.ConsecutiveFailures = false, healthCheckFailed, err.Error(), failures
	return h
}

// healthCheckFailed is the health status shown while calls fail.
const healthCheckFailed = "health check failed"

// release closes the gRPC connection to a plugin left running, without
// go-plugin's shutdown: the plugin's log stream to this runtime ends at
// once, so everything it logs from now on waits for the next runtime.
func release(inst *instance) {
	rpc, err := inst.client.Client()
	if err != nil {
		return
	}
	if c, ok := rpc.(*plugin.GRPCClient); ok {
		_ = c.Conn.Close()
	}
}

// unrequestedExit describes a process that ended on its own; nil for a
// clean exit.
func unrequestedExit(e *pluginstate.Exit) error {
	switch {
	case e == nil:
		return errors.New("plugin process exited")
	case e.Signal == "" && e.Code == 0:
		return nil
	}
	return errors.New("plugin process " + e.String())
}

// probe calls Health every interval and sends the results until ctx ends.
func (s *Supervisor) probe(ctx context.Context, p pluginproto.Plugin, out chan<- healthResult) {
	tick := time.NewTicker(s.opts.HealthInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		hctx, cancel := context.WithTimeout(ctx, s.opts.HealthInterval)
		h, err := p.Health(hctx)
		cancel()
		select {
		case out <- healthResult{h, err}:
		case <-ctx.Done():
			return
		}
	}
}

// terminate stops a running instance: the Stop RPC and go-plugin's
// graceful shutdown within the manifest's stop_timeout, then SIGTERM to
// the process group, then SIGKILL after the kill grace. If the stop's
// context ends first, the group is killed at once. An adopted process is
// stopped the same way: go-plugin's shutdown closes the connection, and
// its exit is seen by polling /proc.
func (s *Supervisor) terminate(inst *instance) ending {
	s.setState(pluginstate.StateStopping, "stop requested")
	s.saveRecord(inst, func(r *record) { r.Stopping = true })
	stopCtx := s.stopContext()
	deadline := time.Now().Add(s.man.StopTimeout)
	rctx, cancel := context.WithDeadline(stopCtx, deadline)
	if err := inst.plugin.Stop(rctx, "stopped by the runtime"); err != nil {
		s.log.Warn("Stop RPC failed", "err", err)
	}
	cancel()
	killed := make(chan struct{})
	go func() {
		defer close(killed)
		inst.client.Kill() // go-plugin's graceful shutdown, SIGKILL of the pid after 2s
	}()
	if !s.awaitExit(stopCtx, inst, deadline) {
		s.log.Warn("plugin still running at its stop timeout: SIGTERM to its process group", "stop_timeout", s.man.StopTimeout)
		if err := inst.signal(syscall.SIGTERM); err != nil {
			s.log.Warn("SIGTERM failed", "err", err)
		}
		if !s.awaitExit(stopCtx, inst, time.Now().Add(s.opts.KillGrace)) {
			s.log.Warn("plugin still running after SIGTERM: SIGKILL to its process group")
			inst.kill()
		}
	}
	<-killed
	return ending{exit: s.reap(inst), stopped: true}
}

// awaitExit polls until the process has exited (true), or the deadline
// passes or ctx ends (false).
func (s *Supervisor) awaitExit(ctx context.Context, inst *instance, deadline time.Time) bool {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	for !inst.client.Exited() {
		select {
		case <-ctx.Done():
			return false
		case <-timer.C:
			return inst.client.Exited()
		case <-tick.C:
		}
	}
	return true
}
