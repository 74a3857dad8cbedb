package supervisor

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/home-console/client-manager/internal/manifest"
	"github.com/home-console/client-manager/internal/pluginstate"
	"github.com/home-console/client-manager/internal/testbin"
)

// binDir holds the test plugin, built once by TestMain.
var binDir string

// flakyBin is the test plugin's path.
func flakyBin() string { return filepath.Join(binDir, "flaky") }

func TestMain(m *testing.M) {
	testbin.Main(m, &binDir, "github.com/home-console/client-manager/e2e/testdata/plugins/flaky")
}

// flaky returns a valid manifest entry for the test plugin in mode.
func flaky(t *testing.T, mode string, edit func(*manifest.Manifest)) manifest.Entry {
	t.Helper()
	m := manifest.Manifest{
		Name:    "flaky",
		Version: "0.0.1",
		Command: flakyBin(),
		Env:     map[string]string{"FLAKY_MODE": mode},
		Enabled: true,
		Restart: manifest.Restart{
			Policy:         manifest.PolicyAlways,
			InitialBackoff: 20 * time.Millisecond,
			MaxBackoff:     100 * time.Millisecond,
			MaxRestarts:    3,
			Window:         time.Minute,
		},
		StopTimeout: 5 * time.Second,
		Path:        filepath.Join(t.TempDir(), manifest.FileName),
	}
	if edit != nil {
		edit(&m)
	}
	return manifest.Entry{Name: m.Name, Dir: filepath.Dir(m.Path), Manifest: m, Status: manifest.StatusOK}
}

// run starts a supervisor loop for e that ends with the test.
func run(t *testing.T, e manifest.Entry, opts Options) *Supervisor {
	t.Helper()
	s := New(e, opts, testLogger(t), func(string) (pluginstate.State, bool) { return pluginstate.StateRunning, true })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return s
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func start(t *testing.T, s *Supervisor, want pluginstate.State) pluginstate.Snapshot {
	t.Helper()
	snap, err := s.Start(ctxFor(t, 20*time.Second))
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	if snap.State != want {
		t.Fatalf("after start: state %s (reason %q, last error %q), want %s", snap.State, snap.Reason, snap.LastError, want)
	}
	return snap
}

// gone reports whether pid no longer runs (absent, or a zombie).
func gone(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return true
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
	return len(fields) > 0 && fields[0] == "Z"
}

// eventually polls cond every 20ms until it holds or d passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestStartAndStop(t *testing.T) {
	t.Parallel()
	s := run(t, flaky(t, "", nil), Options{})
	snap := start(t, s, pluginstate.StateRunning)
	if snap.PID <= 0 || snap.HTTPAddress == "" || snap.InstanceID == "" || snap.StartedAt.IsZero() {
		t.Fatalf("running snapshot incomplete: %+v", snap)
	}
	if !snap.Health.Ready || snap.Health.Details["mode"] != "" {
		t.Fatalf("health %+v", snap.Health)
	}
	conn, err := net.Dial("tcp", snap.HTTPAddress)
	if err != nil {
		t.Fatalf("plugin HTTP address: %v", err)
	}
	_ = conn.Close()

	var te *pluginstate.TransitionError
	if _, err := s.Start(ctxFor(t, time.Second)); !errors.As(err, &te) || te.State != pluginstate.StateRunning {
		t.Fatalf("start of running plugin: %v, want a pluginstate.TransitionError", err)
	}

	begin := time.Now()
	stopped, err := s.Stop(ctxFor(t, 10*time.Second))
	if err != nil {
		t.Fatalf("stop: %v", err)
	}
	if took := time.Since(begin); took > 2*time.Second {
		t.Errorf("graceful stop took %s", took)
	}
	if stopped.State != pluginstate.StateStopped || stopped.PID != 0 || stopped.HTTPAddress != "" {
		t.Fatalf("after stop: %+v", stopped)
	}
	if stopped.LastExit == nil || stopped.LastExit.Code != 0 || stopped.LastExit.Signal != "" {
		t.Fatalf("last exit after a graceful stop: %+v", stopped.LastExit)
	}
	if !gone(snap.PID) {
		t.Fatalf("pid %d still alive after stop", snap.PID)
	}
	if _, err := s.Stop(ctxFor(t, time.Second)); !errors.As(err, &te) || te.State != pluginstate.StateStopped {
		t.Fatalf("stop of stopped plugin: %v, want a pluginstate.TransitionError", err)
	}
}

func TestCrashIsRestarted(t *testing.T) {
	t.Parallel()
	s := run(t, flaky(t, "", nil), Options{})
	first := start(t, s, pluginstate.StateRunning)
	killed := time.Now()
	if err := syscall.Kill(first.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "a new running process", func() bool {
		sn := s.Snapshot()
		return sn.State == pluginstate.StateRunning && sn.PID != first.PID
	})
	t.Logf("running again %s after SIGKILL", time.Since(killed))
	snap := s.Snapshot()
	if snap.Restarts != 1 {
		t.Errorf("restarts = %d, want 1", snap.Restarts)
	}
	if e := snap.LastExit; e == nil || e.Signal != "SIGKILL" || e.SignalNumber != 9 || e.Code != -1 {
		t.Errorf("last exit %+v, want SIGKILL", e)
	}
	if !strings.Contains(snap.LastError, "killed by SIGKILL") {
		t.Errorf("last error %q", snap.LastError)
	}
	if snap.InstanceID == first.InstanceID {
		t.Errorf("instance id did not change")
	}
}

func TestExitAtOnceEndsFailed(t *testing.T) {
	t.Parallel()
	s := run(t, flaky(t, "exit-now", func(m *manifest.Manifest) { m.Restart.MaxRestarts = 2 }), Options{})
	snap := start(t, s, pluginstate.StateFailed)
	if snap.Restarts != 2 {
		t.Errorf("restarts = %d, want 2", snap.Restarts)
	}
	if !strings.Contains(snap.Reason, "gave up after 2 restarts within 1m0s") {
		t.Errorf("reason %q", snap.Reason)
	}
	if snap.LastExit == nil || snap.LastExit.Code != 3 {
		t.Errorf("last exit %+v, want code 3", snap.LastExit)
	}
	if !strings.Contains(snap.LastError, "process exited with code 3 before the plugin handshake completed") {
		t.Errorf("last error %q", snap.LastError)
	}
	if snap.PID != 0 {
		t.Errorf("pid %d in failed state", snap.PID)
	}
	// An operator can start a failed plugin again, with a fresh budget.
	again := start(t, s, pluginstate.StateFailed)
	if again.Restarts != 4 {
		t.Errorf("restarts after the second start = %d, want 4", again.Restarts)
	}
}

func TestPolicies(t *testing.T) {
	t.Parallel()
	tests := []struct {
		policy manifest.Policy
		mode   string
		want   pluginstate.State
		reason string
	}{
		{manifest.PolicyNever, "crash-after-start", pluginstate.StateFailed, "restart policy never: plugin process exited with code 2"},
		{manifest.PolicyOnFailure, "crash-after-start", pluginstate.StateFailed, "gave up after 1 restarts"},
	}
	for _, tc := range tests {
		t.Run(string(tc.policy), func(t *testing.T) {
			t.Parallel()
			s := run(t, flaky(t, tc.mode, func(m *manifest.Manifest) {
				m.Restart.Policy, m.Restart.MaxRestarts = tc.policy, 1
				m.Env["FLAKY_CRASH_AFTER"] = "50ms"
			}), Options{})
			start(t, s, pluginstate.StateRunning)
			eventually(t, 10*time.Second, "state "+string(tc.want), func() bool { return s.Snapshot().State == tc.want })
			if r := s.Snapshot().Reason; !strings.Contains(r, tc.reason) {
				t.Errorf("reason %q, want %q", r, tc.reason)
			}
		})
	}
}

func TestNeverReadyFailsLaunch(t *testing.T) {
	t.Parallel()
	e := flaky(t, "never-ready", func(m *manifest.Manifest) {
		m.Restart.Policy, m.StartTimeout = manifest.PolicyNever, 700*time.Millisecond
	})
	s := run(t, e, Options{})
	snap := start(t, s, pluginstate.StateFailed)
	if !strings.Contains(snap.LastError, "not ready within 700ms") {
		t.Errorf("last error %q", snap.LastError)
	}
	if snap.LastExit == nil || snap.LastExit.Signal != "SIGKILL" {
		t.Errorf("last exit %+v, want SIGKILL", snap.LastExit)
	}
}

func TestUnhealthyIsKilled(t *testing.T) {
	t.Parallel()
	e := flaky(t, "unhealthy", func(m *manifest.Manifest) { m.Restart.Policy = manifest.PolicyNever })
	s := run(t, e, Options{HealthInterval: 50 * time.Millisecond, HealthFailures: 3})
	start(t, s, pluginstate.StateRunning)
	eventually(t, 5*time.Second, "state failed", func() bool { return s.Snapshot().State == pluginstate.StateFailed })
	snap := s.Snapshot()
	if !strings.Contains(snap.LastError, "3 consecutive health checks failed") ||
		!strings.Contains(snap.LastError, "unhealthy on purpose") {
		t.Errorf("last error %q", snap.LastError)
	}
	if snap.LastExit == nil || snap.LastExit.Signal != "SIGKILL" {
		t.Errorf("last exit %+v, want SIGKILL", snap.LastExit)
	}
}

func TestHangOnStopEscalates(t *testing.T) {
	t.Parallel()
	e := flaky(t, "hang-on-stop", func(m *manifest.Manifest) { m.StopTimeout = 500 * time.Millisecond })
	s := run(t, e, Options{KillGrace: 300 * time.Millisecond})
	snap := start(t, s, pluginstate.StateRunning)
	begin := time.Now()
	stopped, err := s.Stop(ctxFor(t, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(begin)
	t.Logf("stop took %s", took)
	if took < 500*time.Millisecond || took > 3*time.Second {
		t.Errorf("stop took %s, want stop_timeout 500ms + grace 300ms", took)
	}
	if stopped.State != pluginstate.StateStopped || stopped.LastExit == nil || stopped.LastExit.Signal != "SIGKILL" {
		t.Errorf("after stop: state %s, last exit %+v", stopped.State, stopped.LastExit)
	}
	if !gone(snap.PID) {
		t.Errorf("pid %d still alive", snap.PID)
	}
}

func TestStopContextKillsAtOnce(t *testing.T) {
	t.Parallel()
	s := run(t, flaky(t, "hang-on-stop", nil), Options{})
	start(t, s, pluginstate.StateRunning)
	begin := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := s.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(begin); took > 2*time.Second {
		t.Errorf("stop with a 200ms context took %s", took)
	}
}

func TestGrandchildIsKilled(t *testing.T) {
	t.Parallel()
	s := run(t, flaky(t, "spawn-child", nil), Options{})
	snap := start(t, s, pluginstate.StateRunning)
	child, err := strconv.Atoi(snap.Health.Details["child_pid"])
	if err != nil {
		t.Fatalf("child pid in health details %v: %v", snap.Health.Details, err)
	}
	if _, err := s.Stop(ctxFor(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Second, "the grandchild to be gone", func() bool { return gone(child) })
}

func TestChecksumMismatch(t *testing.T) {
	t.Parallel()
	e := flaky(t, "", func(m *manifest.Manifest) {
		m.SHA256 = strings.Repeat("0", 64)
		m.Restart.Policy = manifest.PolicyNever
	})
	snap := start(t, run(t, e, Options{}), pluginstate.StateFailed)
	if !strings.Contains(snap.LastError, "checksum mismatch") {
		t.Errorf("last error %q", snap.LastError)
	}
}

func TestManifestEnvWins(t *testing.T) {
	t.Setenv("FLAKY_MODE", "never-ready")
	s := run(t, flaky(t, "", nil), Options{})
	start(t, s, pluginstate.StateRunning)
}

func TestStaticStatesRefuseActions(t *testing.T) {
	t.Parallel()
	for _, st := range []manifest.Status{manifest.StatusInvalid, manifest.StatusBlocked, manifest.StatusDisabled} {
		e := manifest.Entry{Name: "x", Dir: t.TempDir(), Status: st, Reason: "because"}
		s := run(t, e, Options{})
		for name, op := range map[string]func(context.Context) (pluginstate.Snapshot, error){"start": s.Start, "stop": s.Stop, "restart": s.Restart} {
			var te *pluginstate.TransitionError
			if _, err := op(ctxFor(t, time.Second)); !errors.As(err, &te) || te.Reason != "because" {
				t.Errorf("%s of %s plugin: %v", name, st, err)
			}
		}
	}
}

func TestStopWhileStarting(t *testing.T) {
	t.Parallel()
	s := run(t, flaky(t, "never-ready", nil), Options{})
	started := make(chan pluginstate.Snapshot, 1)
	go func() {
		snap, _ := s.Start(ctxFor(t, 20*time.Second))
		started <- snap
	}()
	eventually(t, 10*time.Second, "a starting process", func() bool {
		sn := s.Snapshot()
		return sn.State == pluginstate.StateStarting && sn.PID > 0
	})
	pid := s.Snapshot().PID
	begin := time.Now()
	snap, err := s.Stop(ctxFor(t, 10*time.Second))
	if err != nil || snap.State != pluginstate.StateStopped {
		t.Fatalf("stop while starting: %v, state %s", err, snap.State)
	}
	if took := time.Since(begin); took > 2*time.Second {
		t.Errorf("stop while starting took %s", took)
	}
	if got := <-started; got.State != pluginstate.StateStopped {
		t.Errorf("start ended %s, want stopped", got.State)
	}
	if !gone(pid) {
		t.Errorf("pid %d still alive", pid)
	}
}

func TestGroupDependencies(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	for name, body := range map[string]string{
		"base": `{"name":"base","version":"1.0.0","command":"` + flakyBin() + `","enabled":true}`,
		"app":  `{"name":"app","version":"1.0.0","command":"` + flakyBin() + `","dependencies":["base"]}`,
	} {
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
	defer func() {
		g.StopAll(ctxFor(t, 10*time.Second))
		cancel()
		g.Wait()
	}()
	app, _ := g.Get("app")
	var te *pluginstate.TransitionError
	if _, err := app.Start(ctxFor(t, 5*time.Second)); !errors.As(err, &te) || !strings.Contains(te.Reason, "dependency base is stopped") {
		t.Fatalf("start of app before base: %v", err)
	}
	if _, err := g.Get("nope"); !errors.Is(err, pluginstate.ErrUnknownPlugin) {
		t.Errorf("Get of unknown plugin: %v", err)
	}
	g.StartAll(ctxFor(t, 20*time.Second))
	for _, sn := range g.List() {
		if sn.State != pluginstate.StateRunning {
			t.Errorf("%s is %s after StartAll (%s)", sn.Name, sn.State, sn.LastError)
		}
	}
	g.StopAll(ctxFor(t, 10*time.Second))
	for _, sn := range g.List() {
		if sn.State != pluginstate.StateStopped {
			t.Errorf("%s is %s after StopAll", sn.Name, sn.State)
		}
	}
}

func TestEnvironHidesRuntimeSecrets(t *testing.T) {
	t.Setenv("RUNTIME_ADMIN_TOKEN", "admin-secret")
	t.Setenv("RUNTIME_LOG_LEVEL", "debug")
	s := &Supervisor{man: manifest.Manifest{Env: map[string]string{"A": "1"}}}
	env := s.environ()
	for _, kv := range env {
		if strings.Contains(kv, "admin-secret") {
			t.Fatalf("plugin environment carries the admin token: %q", kv)
		}
	}
	if !slices.Contains(env, "RUNTIME_LOG_LEVEL=debug") || !slices.Contains(env, "A=1") {
		t.Fatalf("environment lost other variables: %v", env)
	}
}
