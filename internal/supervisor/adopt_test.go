package supervisor

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/home-console/client-manager/internal/manifest"
	"github.com/home-console/client-manager/internal/pluginstate"
)

// lockedBuffer is a bytes.Buffer safe for concurrent use.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// detached starts e under a supervisor with state in dir, then detaches
// it as a runtime would on SIGUSR2, leaving the process running. Its
// record stays in dir. The process is killed when the test ends.
func detached(t *testing.T, e manifest.Entry, dir string) pluginstate.Snapshot {
	t.Helper()
	// This supervisor's go-plugin goroutines outlive the test: they must
	// not log through t.
	log := slog.New(slog.NewTextHandler(&lockedBuffer{}, nil))
	s := New(e, Options{StateDir: dir}, log, func(string) (pluginstate.State, bool) { return pluginstate.StateRunning, true })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Run(ctx)
	}()
	snap := start(t, s, pluginstate.StateRunning)
	t.Cleanup(func() { _ = syscall.Kill(-snap.PID, syscall.SIGKILL) })
	s.Detach()
	cancel()
	<-done
	if gone(snap.PID) {
		t.Fatalf("pid %d ended when its supervisor detached", snap.PID)
	}
	return snap
}

func TestAdoptAfterDetach(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	e := flaky(t, "", func(m *manifest.Manifest) { m.Mount = "/flaky" })
	first := detached(t, e, dir)
	rec, err := newStateStore(dir).load("flaky")
	if err != nil || rec == nil || rec.PID != first.PID || rec.InstanceID != first.InstanceID || rec.ProxyToken == "" {
		t.Fatalf("record after detach: %+v, %v", rec, err)
	}

	s := run(t, e, Options{StateDir: dir})
	adopted := start(t, s, pluginstate.StateRunning)
	if adopted.PID != first.PID || adopted.InstanceID != first.InstanceID || adopted.HTTPAddress != first.HTTPAddress {
		t.Fatalf("adopted %+v, want pid %d and instance %s", adopted, first.PID, first.InstanceID)
	}
	if !adopted.StartedAt.Equal(first.StartedAt) {
		t.Errorf("started_at %s, want the original %s", adopted.StartedAt, first.StartedAt)
	}
	if _, token, ok := s.Upstream(); !ok || token != rec.ProxyToken {
		t.Errorf("proxy token after adoption %q, want the recorded one", token)
	}

	killed := time.Now()
	if err := syscall.Kill(first.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "a new process", func() bool {
		sn := s.Snapshot()
		return sn.State == pluginstate.StateRunning && sn.PID != first.PID
	})
	snap := s.Snapshot()
	t.Logf("adopted process replaced %s after SIGKILL", time.Since(killed))
	if e := snap.LastExit; e == nil || !e.Unknown || snap.Restarts != 1 {
		t.Errorf("last exit %+v, restarts %d: want an unknown status and 1 restart", e, snap.Restarts)
	}
	if rec, _ := newStateStore(dir).load("flaky"); rec == nil || rec.PID != snap.PID || rec.ProxyToken == "" {
		t.Errorf("record of the new process: %+v", rec)
	}

	if _, err := s.Stop(ctxFor(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if rec, err := newStateStore(dir).load("flaky"); rec != nil || err != nil {
		t.Errorf("record after a graceful stop: %+v, %v", rec, err)
	}
}

func TestAdoptedProcessStopsGracefully(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	e := flaky(t, "", nil)
	first := detached(t, e, dir)
	s := run(t, e, Options{StateDir: dir})
	start(t, s, pluginstate.StateRunning)
	begin := time.Now()
	stopped, err := s.Stop(ctxFor(t, 10*time.Second))
	if err != nil || stopped.State != pluginstate.StateStopped {
		t.Fatalf("stop: %+v, %v", stopped, err)
	}
	if took := time.Since(begin); took > 2*time.Second {
		t.Errorf("stopping the adopted process took %s", took)
	}
	if !gone(first.PID) {
		t.Errorf("pid %d still runs after stop", first.PID)
	}
}

func TestReplaceUnusableProcess(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	e := flaky(t, "", nil)
	first := detached(t, e, dir)
	st := newStateStore(dir)
	rec, err := st.load("flaky")
	if err != nil || rec == nil {
		t.Fatal(rec, err)
	}
	rec.InstanceID = "not-this-one"
	if err := st.save(rec); err != nil {
		t.Fatal(err)
	}
	s := run(t, e, Options{StateDir: dir})
	snap := start(t, s, pluginstate.StateRunning)
	if snap.PID == first.PID {
		t.Fatal("adopted a process whose instance id does not match")
	}
	if !gone(first.PID) {
		t.Errorf("unusable pid %d was not stopped", first.PID)
	}
}

func TestReplaceWhenManifestChanged(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	first := detached(t, flaky(t, "", nil), dir)
	changed := flaky(t, "", func(m *manifest.Manifest) { m.Args = []string{"--changed"} })
	s := run(t, changed, Options{StateDir: dir})
	snap := start(t, s, pluginstate.StateRunning)
	if snap.PID == first.PID || !gone(first.PID) {
		t.Errorf("pid %d (was %d): the process launched from the old manifest must be replaced", snap.PID, first.PID)
	}
}

func TestReplaceWhenExecutableChanged(t *testing.T) {
	t.Parallel()
	exe := filepath.Join(t.TempDir(), "flaky")
	install := func() {
		data, err := os.ReadFile(flakyBin())
		if err != nil {
			t.Fatal(err)
		}
		tmp := exe + ".new"
		if err := os.WriteFile(tmp, data, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, exe); err != nil {
			t.Fatal(err)
		}
	}
	install()
	e := flaky(t, "", func(m *manifest.Manifest) { m.Command = exe })
	dir := t.TempDir()
	first := detached(t, e, dir)

	// go build touches an unchanged binary: still the same process.
	later := time.Now().Add(time.Hour)
	if err := os.Chtimes(exe, later, later); err != nil {
		t.Fatal(err)
	}
	if again := detached(t, e, dir); again.PID != first.PID {
		t.Fatalf("pid %d after touching the executable, want the adopted %d", again.PID, first.PID)
	}

	install() // a new file at the same path, as an upgrade leaves it
	s := run(t, e, Options{StateDir: dir})
	if snap := start(t, s, pluginstate.StateRunning); snap.PID == first.PID || !gone(first.PID) {
		t.Errorf("pid %d (was %d): the process running the old executable must be replaced", snap.PID, first.PID)
	}
}

func TestAdoptThroughSymlink(t *testing.T) {
	t.Parallel()
	bin := t.TempDir()
	link := filepath.Join(bin, "current")
	for _, name := range []string{"v1", "v2"} {
		data, err := os.ReadFile(flakyBin())
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(bin, name), data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("v1", link); err != nil {
		t.Fatal(err)
	}
	e := flaky(t, "", func(m *manifest.Manifest) { m.Command = link })
	dir := t.TempDir()
	first := detached(t, e, dir)
	if again := detached(t, e, dir); again.PID != first.PID {
		t.Fatalf("pid %d, want the adopted %d: the command is a symlink to the running file", again.PID, first.PID)
	}
	// An upgrade that points the symlink at another file.
	if err := os.Remove(link); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("v2", link); err != nil {
		t.Fatal(err)
	}
	s := run(t, e, Options{StateDir: dir})
	if snap := start(t, s, pluginstate.StateRunning); snap.PID == first.PID || !gone(first.PID) {
		t.Errorf("pid %d (was %d): the process running v1 must be replaced", snap.PID, first.PID)
	}
}

func TestNeverSignalsForeignProcess(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	sleep := exec.Command("sleep", "60")
	sleep.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = sleep.Process.Kill()
		_ = sleep.Wait()
	})
	p, err := readProc(sleep.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	// Everything matches but the executable.
	if err := newStateStore(dir).save(&record{
		Plugin: "flaky", PID: sleep.Process.Pid, StartTime: p.StartTime, Binary: flakyBin(),
		Protocol: "grpc", ProtocolVersion: 1, Network: "unix", Address: "/nonexistent/plugin.sock",
	}); err != nil {
		t.Fatal(err)
	}
	s := run(t, flaky(t, "", nil), Options{StateDir: dir})
	snap := start(t, s, pluginstate.StateRunning)
	if snap.PID == sleep.Process.Pid || gone(sleep.Process.Pid) {
		t.Fatalf("the foreign process %d was adopted or signalled", sleep.Process.Pid)
	}
	time.Sleep(200 * time.Millisecond)
	if gone(sleep.Process.Pid) {
		t.Fatalf("the foreign process %d was signalled", sleep.Process.Pid)
	}
}

func TestStateStore(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	st := newStateStore(dir)
	want := &record{Plugin: "p", PID: 42, StartTime: 7, ProxyToken: "secret", StartedAt: time.Unix(1700000000, 0).UTC()}
	if err := st.save(want); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, "plugins", "p.json"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("record mode %v, want 0600", fi.Mode().Perm())
	}
	entries, _ := os.ReadDir(filepath.Join(dir, "plugins"))
	if len(entries) != 1 {
		t.Errorf("files in the record directory: %v, want only p.json", entries)
	}
	got, err := st.load("p")
	if err != nil || got.PID != 42 || got.ProxyToken != "secret" || !got.StartedAt.Equal(want.StartedAt) {
		t.Fatalf("load: %+v, %v", got, err)
	}
	if err := st.remove("p"); err != nil {
		t.Fatal(err)
	}
	if got, err := st.load("p"); got != nil || err != nil {
		t.Errorf("load after remove: %+v, %v", got, err)
	}
	var none *stateStore
	if err := none.save(want); err != nil {
		t.Errorf("a nil store must keep nothing: %v", err)
	}

	for name, body := range map[string]string{
		"truncated":     `{"version":1,"plugin":"p","pid":`,
		"other version": `{"version":99,"plugin":"p","pid":42}`,
		"other plugin":  `{"version":1,"plugin":"q","pid":42}`,
	} {
		if err := os.WriteFile(st.path("p"), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if got, err := st.load("p"); got != nil || err == nil {
			t.Errorf("%s record: %+v, %v; want an error", name, got, err)
		}
	}
}

func TestCorruptRecordIsIgnored(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	st := newStateStore(dir)
	if err := os.MkdirAll(st.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(st.path("flaky"), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs lockedBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	s := New(flaky(t, "", nil), Options{StateDir: dir}, log, func(string) (pluginstate.State, bool) { return pluginstate.StateRunning, true })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Run(ctx)
	}()
	defer func() {
		cancel()
		<-done
	}()
	start(t, s, pluginstate.StateRunning)
	if !strings.Contains(logs.String(), "ignoring a defective re-attach record") {
		t.Errorf("no warning about the corrupt record:\n%s", logs.String())
	}
	if rec, err := st.load("flaky"); err != nil || rec == nil || rec.PID != s.Snapshot().PID {
		t.Errorf("record of the new process: %+v, %v", rec, err)
	}
}
