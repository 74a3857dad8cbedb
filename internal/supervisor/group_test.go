package supervisor

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/home-console/client-manager/internal/manifest"
	"github.com/home-console/client-manager/internal/pluginstate"
)

// runGroup discovers the manifests (name -> JSON after the command) and
// runs a group over them until the test ends.
func runGroup(t *testing.T, manifests map[string]string) *Group {
	t.Helper()
	root := t.TempDir()
	for name, rest := range manifests {
		body := `{"name":"` + name + `","version":"1.0.0","command":"` + flakyBin() + `"` + rest + `}`
		if err := os.MkdirAll(filepath.Join(root, name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, name, manifest.FileName), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	set, err := manifest.Discover(root)
	if err != nil {
		t.Fatal(err)
	}
	g := NewGroup(set, Options{}, testLogger(t))
	ctx, cancel := context.WithCancel(context.Background())
	g.Run(ctx)
	t.Cleanup(func() {
		g.StopAll(ctxFor(t, 10*time.Second))
		cancel()
		g.Wait()
	})
	return g
}

func snapshotOf(t *testing.T, g *Group, name string) pluginstate.Snapshot {
	t.Helper()
	sn, err := g.Snapshot(name)
	if err != nil {
		t.Fatal(err)
	}
	return sn
}

func TestStartAllDoesNotWaitForAHangingPlugin(t *testing.T) {
	t.Parallel()
	never := `,"restart":{"policy":"never"}`
	g := runGroup(t, map[string]string{
		"a_hang":  `,"env":{"FLAKY_MODE":"hang-before-serve"},"start_timeout":"3s"` + never,
		"b_dep":   `,"dependencies":["a_hang"]`,
		"c_dep":   `,"dependencies":["a_hang"]`,
		"d_alone": ``,
	})
	begin := time.Now()
	done := make(chan struct{})
	go func() {
		defer close(done)
		g.StartAll(ctxFor(t, 30*time.Second))
	}()
	eventually(t, 2500*time.Millisecond, "d_alone running while a_hang hangs", func() bool {
		return snapshotOf(t, g, "d_alone").State == pluginstate.StateRunning
	})
	t.Logf("d_alone running after %s", time.Since(begin))
	if a := snapshotOf(t, g, "a_hang"); a.State != pluginstate.StateStarting {
		t.Fatalf("a_hang is %s, want still starting", a.State)
	}
	for _, name := range []string{"b_dep", "c_dep"} {
		if sn := snapshotOf(t, g, name); sn.State != pluginstate.StateStarting ||
			sn.Reason != "waiting for dependency a_hang (starting)" || sn.PID != 0 {
			t.Fatalf("%s is %s %q (pid %d), want starting, waiting for a_hang", name, sn.State, sn.Reason, sn.PID)
		}
	}
	if _, err := g.Stop(ctxFor(t, 5*time.Second), "c_dep"); err != nil {
		t.Fatalf("stop of a waiting plugin: %v", err)
	}
	<-done
	t.Logf("StartAll returned after %s", time.Since(begin))
	a, b, c := snapshotOf(t, g, "a_hang"), snapshotOf(t, g, "b_dep"), snapshotOf(t, g, "c_dep")
	if a.State != pluginstate.StateFailed || !strings.Contains(a.Reason, "start_timeout of 3s exceeded") {
		t.Errorf("a_hang is %s %q, want failed by its start_timeout", a.State, a.Reason)
	}
	if b.State != pluginstate.StateStopped || b.LastError != "not started: dependency a_hang is failed, not running" {
		t.Errorf("b_dep is %s, last error %q", b.State, b.LastError)
	}
	if c.State != pluginstate.StateStopped || c.LastError != "" || c.Restarts != 0 {
		t.Errorf("c_dep, stopped while waiting, is %s (last error %q)", c.State, c.LastError)
	}
}

func TestStartAllStartsDependentsOnceTheirDependencyRuns(t *testing.T) {
	t.Parallel()
	g := runGroup(t, map[string]string{"base": ``, "app": `,"dependencies":["base"]`, "top": `,"dependencies":["app","base"]`})
	g.StartAll(ctxFor(t, 20*time.Second))
	for _, sn := range g.List() {
		if sn.State != pluginstate.StateRunning || sn.Reason != "" {
			t.Errorf("%s is %s %q after StartAll (%s)", sn.Name, sn.State, sn.Reason, sn.LastError)
		}
	}
}

func TestStartAllEndsHoldsWithItsContext(t *testing.T) {
	t.Parallel()
	g := runGroup(t, map[string]string{
		"a_hang": `,"env":{"FLAKY_MODE":"hang-before-serve"}`,
		"b_dep":  `,"dependencies":["a_hang"]`,
	})
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	g.StartAll(ctx)
	if b := snapshotOf(t, g, "b_dep"); b.State != pluginstate.StateStopped || b.Reason != "" {
		t.Errorf("b_dep is %s %q once StartAll ended, want stopped", b.State, b.Reason)
	}
}

func TestHealthShowsTheFirstFailure(t *testing.T) {
	t.Parallel()
	e := flaky(t, "unhealthy", nil)
	s := run(t, e, Options{HealthInterval: 50 * time.Millisecond, HealthFailures: 1000})
	if h := start(t, s, pluginstate.StateRunning).Health; !h.Ready || h.ConsecutiveFailures != 0 || h.LastError != "" {
		t.Fatalf("health when running: %+v", h)
	}
	eventually(t, 5*time.Second, "health not ready", func() bool { return !s.Snapshot().Health.Ready })
	h := s.Snapshot().Health
	if h.ConsecutiveFailures < 1 || !strings.Contains(h.LastError, "unhealthy on purpose") || h.Status != healthCheckFailed {
		t.Fatalf("health after a failed check: %+v", h)
	}
	eventually(t, 5*time.Second, "3 consecutive failures", func() bool { return s.Snapshot().Health.ConsecutiveFailures >= 3 })
	if st := s.Snapshot().State; st != pluginstate.StateRunning {
		t.Errorf("state %s, want running (1000 failures allowed)", st)
	}
}
