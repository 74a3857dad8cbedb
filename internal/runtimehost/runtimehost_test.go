package runtimehost

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/home-console/client-manager/internal/dirlock"
	"github.com/home-console/client-manager/internal/logging"
	"github.com/home-console/client-manager/internal/syncbuf"
	"github.com/home-console/client-manager/internal/testbin"
	"github.com/home-console/client-manager/internal/version"
)

// binDir holds the test plugin, built once by TestMain.
var binDir string

func TestMain(m *testing.M) {
	testbin.Main(m, &binDir, "github.com/home-console/client-manager/e2e/testdata/plugins/flaky")
}

// testConfig returns a configuration over a plugins directory holding the
// test plugin "good", with a free port and a fresh state directory.
func testConfig(t *testing.T) Config {
	t.Helper()
	plugins := t.TempDir()
	dir := filepath.Join(plugins, "good")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	m := `{"name":"good","version":"1.0.0","command":"` + filepath.Join(binDir, "flaky") + `","stop_timeout":"5s"}`
	if err := os.WriteFile(filepath.Join(dir, "plugin.json"), []byte(m), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Port, cfg.PluginsDir, cfg.StateDir = 0, plugins, t.TempDir()
	return cfg
}

// started is a Run in progress.
type started struct {
	addr string
	logs *syncbuf.Buffer
	stop context.CancelFunc
	done chan error
}

// start runs the runtime in the background and waits for its address file.
func start(t *testing.T, cfg Config) *started {
	t.Helper()
	s := &started{logs: &syncbuf.Buffer{}, done: make(chan error, 1)}
	log, err := logging.New(s.logs, "debug", "json")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.stop = cancel
	go func() { s.done <- Run(ctx, cfg, log) }()
	t.Cleanup(func() {
		cancel()
		<-s.done
	})
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(filepath.Join(cfg.StateDir, AddrFile)); err == nil {
			s.addr = strings.TrimSpace(string(b))
			return s
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no %s after 15s; logs:\n%s", AddrFile, s.logs)
	return nil
}

type health struct {
	Version string `json:"version"`
	PID     int    `json:"pid"`
	Plugins struct {
		States map[string]int `json:"states"`
	} `json:"plugins"`
}

func getHealth(t *testing.T, addr string) health {
	t.Helper()
	res, err := http.Get("http://" + addr + "/api/admin/v1/health")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var h health
	if err := json.NewDecoder(res.Body).Decode(&h); err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("health: %d %v", res.StatusCode, err)
	}
	return h
}

func TestRunServesAndStops(t *testing.T) {
	cfg := testConfig(t)
	s := start(t, cfg)
	var h health
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if h = getHealth(t, s.addr); h.Plugins.States["running"] == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("plugin not running: %+v\n%s", h, s.logs)
		}
	}
	if h.PID != os.Getpid() || h.Version != version.Get().Version {
		t.Errorf("health pid %d version %q, want %d %q", h.PID, h.Version, os.Getpid(), version.Get().Version)
	}
	if !strings.Contains(s.logs.String(), fmt.Sprintf(`"msg":"runtime starting","pid":%d`, os.Getpid())) {
		t.Errorf("the start is not logged with the pid:\n%s", s.logs)
	}
	s.stop()
	select {
	case err := <-s.done:
		s.done <- err // for the cleanup
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return 20s after its context ended")
	}
	if _, err := os.Stat(filepath.Join(cfg.StateDir, AddrFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s left behind: %v", AddrFile, err)
	}
	if !strings.Contains(s.logs.String(), `"timeout":"30s"`) {
		t.Errorf("the shutdown timeout is not logged as a duration:\n%s", s.logs)
	}
}

func TestSecondRunOnOneStateDirIsRefused(t *testing.T) {
	cfg := testConfig(t)
	start(t, cfg)
	second := cfg
	second.PluginsDir = t.TempDir()
	var logs syncbuf.Buffer
	log, _ := logging.New(&logs, "info", "json")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := Run(ctx, second, log)
	if !errors.Is(err, dirlock.ErrHeld) || !strings.Contains(err.Error(), fmt.Sprintf("pid %d", os.Getpid())) {
		t.Fatalf("second Run: %v, want the lock refused naming pid %d", err, os.Getpid())
	}
	if logs.String() != "" {
		t.Errorf("the refused runtime logged (so it went on): %s", logs.String())
	}
}

func TestRunDetachesOnSIGUSR2(t *testing.T) {
	cfg := testConfig(t)
	s := start(t, cfg)
	for deadline := time.Now().Add(15 * time.Second); getHealth(t, s.addr).Plugins.States["running"] != 1; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("plugin not running:\n%s", s.logs)
		}
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGUSR2); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-s.done:
		s.done <- err
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return 20s after SIGUSR2")
	}
	records, _ := filepath.Glob(filepath.Join(cfg.StateDir, "plugins", "*.json"))
	if len(records) != 1 {
		t.Fatalf("re-attach records after a detach: %v, want the running plugin's", records)
	}
	var rec struct{ PID int }
	b, _ := os.ReadFile(records[0])
	if err := json.Unmarshal(b, &rec); err != nil || rec.PID <= 0 || syscall.Kill(rec.PID, 0) != nil {
		t.Fatalf("record %s: pid %d not running (%v)", records[0], rec.PID, err)
	}
	_ = syscall.Kill(-rec.PID, syscall.SIGKILL)
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		change func(*Config)
		want   string
	}{
		{func(*Config) {}, ""},
		{func(c *Config) { c.Port = 70000 }, "RUNTIME_PORT"},
		{func(c *Config) { c.ShutdownTimeout = 0 }, "RUNTIME_SHUTDOWN_TIMEOUT"},
		{func(c *Config) { c.Host = "0.0.0.0" }, "not a loopback address"},
		{func(c *Config) { c.Host, c.AdminToken = "0.0.0.0", "t" }, ""},
		{func(c *Config) { c.Host = "localhost" }, ""},
		{func(c *Config) { c.Host = "::1" }, ""},
	} {
		c := DefaultConfig()
		tc.change(&c)
		err := c.Validate()
		if (err == nil) != (tc.want == "") || err != nil && (!strings.Contains(err.Error(), tc.want) || !errors.Is(err, ErrConfig)) {
			t.Errorf("%+v: %v, want %q", c, err, tc.want)
		}
	}
}
