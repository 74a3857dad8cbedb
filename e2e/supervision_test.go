package e2e

import (
	"strings"
	"syscall"
	"testing"
	"time"
)

// waitFor polls the named plugin every 25 ms until cond holds, and
// returns it with the time waited.
func (r *runtimeProc) waitFor(name, what string, timeout time.Duration, cond func(pluginJSON) bool) (pluginJSON, time.Duration) {
	r.t.Helper()
	begin := time.Now()
	for {
		p := r.plugin(name)
		if cond(p) {
			return p, time.Since(begin)
		}
		if time.Since(begin) > timeout {
			r.t.Fatalf("%s: not %s after %s: %+v", name, what, timeout, p)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// TestHangingPluginDelaysOnlyItsDependents: a plugin that never
// completes its handshake (default start_timeout, 30 s) neither delays
// the client manager, which does not depend on it, nor leaves its
// dependent without a reason: that one is starting, waiting for it.
func TestHangingPluginDelaysOnlyItsDependents(t *testing.T) {
	t.Parallel()
	begin := time.Now()
	r := startRuntime(t, plugins(t, map[string]string{
		// Named to sort first: discovery order is by name.
		"a_hang":         flaky("a_hang", "hang-before-serve", ""),
		"b_dep":          flaky("b_dep", "", `,"dependencies":["a_hang"]`),
		"client_manager": clientManager(),
	}))
	r.waitFor(cm, "running", 15*time.Second, func(p pluginJSON) bool { return p.State == "running" })
	t.Logf("client_manager_running_after=%s (next to a plugin hanging in its handshake)", time.Since(begin).Round(time.Millisecond))
	if a := r.plugin("a_hang"); a.State != "starting" {
		t.Fatalf("a_hang is %s, want still starting (hanging in its handshake)", a.State)
	}
	b := r.plugin("b_dep")
	if b.State != "starting" || !strings.Contains(b.Reason, "a_hang") || b.PID != 0 {
		t.Fatalf("b_dep is %s %q (pid %d), want starting with a reason naming a_hang", b.State, b.Reason, b.PID)
	}
	t.Logf("b_dep: state=%s reason=%q", b.State, b.Reason)
}

// TestStartTimeoutFromTheManifest: a plugin that hangs in its handshake
// is given up after its manifest's start_timeout (1 s), not 30 s.
func TestStartTimeoutFromTheManifest(t *testing.T) {
	t.Parallel()
	r := startRuntime(t, plugins(t, map[string]string{
		"hang": flaky("hang", "hang-before-serve", `,"start_timeout":"1s","restart":{"policy":"never"}`),
	}))
	_, untilStarting := r.waitFor("hang", "starting", 10*time.Second, func(p pluginJSON) bool { return p.State == "starting" })
	p, took := r.waitFor("hang", "failed", 15*time.Second, func(p pluginJSON) bool { return p.State == "failed" })
	took += untilStarting
	t.Logf("start_timeout_1s_failed_after=%s", took.Round(time.Millisecond))
	if !strings.Contains(p.Reason, "start_timeout of 1s exceeded") || !strings.Contains(p.LastError, "start_timeout of 1s exceeded") {
		t.Errorf("reason %q, last error %q: want the start_timeout named", p.Reason, p.LastError)
	}
	if took < 500*time.Millisecond || took > 10*time.Second {
		t.Errorf("failed after %s, want about 1s", took)
	}
}

// TestFrozenPluginIsNotReadyFromTheFirstFailedCheck: SIGSTOP makes the
// plugin's health checks time out; the admin API shows ready=false with
// the failure from the first one (health checks every 2 s, 2 s timeout),
// while the process is still the same one, and ready again after
// SIGCONT, without a restart.
func TestFrozenPluginIsNotReadyFromTheFirstFailedCheck(t *testing.T) {
	t.Parallel()
	r := startRuntime(t, plugins(t, map[string]string{"flaky": flaky("flaky", "", "")}))
	before, _ := r.waitFor("flaky", "ready", 20*time.Second, func(p pluginJSON) bool { return p.State == "running" && p.Health.Ready })
	if err := syscall.Kill(before.PID, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(before.PID, syscall.SIGCONT) })
	frozen, took := r.waitFor("flaky", "not ready", 8*time.Second, func(p pluginJSON) bool { return !p.Health.Ready })
	t.Logf("not_ready_after_sigstop=%s consecutive_failures=%d last_error=%q", took.Round(time.Millisecond),
		frozen.Health.ConsecutiveFailures, frozen.Health.LastError)
	if frozen.State != "running" || frozen.PID != before.PID || frozen.Health.ConsecutiveFailures < 1 ||
		frozen.Health.LastError == "" || frozen.Health.Status != "health check failed" {
		t.Fatalf("frozen plugin: %+v, want running (same pid %d) with ready=false and the failed check", frozen, before.PID)
	}
	if err := syscall.Kill(before.PID, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	back, took := r.waitFor("flaky", "ready again", 8*time.Second, func(p pluginJSON) bool { return p.Health.Ready })
	t.Logf("ready_after_sigcont=%s", took.Round(time.Millisecond))
	if back.State != "running" || back.PID != before.PID || back.Restarts != before.Restarts || back.Health.ConsecutiveFailures != 0 {
		t.Fatalf("after SIGCONT: %+v, want the same process running, no restart", back)
	}
}
