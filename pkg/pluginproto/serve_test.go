package pluginproto

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
)

// TestMain turns the test binary into a plugin when the host side of a
// test launches it.
func TestMain(m *testing.M) {
	if LaunchedByRuntime() {
		serveTestPlugin()
		return
	}
	os.Exit(m.Run())
}

// stopLines is how many lines the test plugin logs while stopping.
const stopLines = 500

// testPlugin logs through a LogWriter.
type testPlugin struct{ log *slog.Logger }

func serveTestPlugin() {
	logs := NewLogWriter(os.Stderr)
	log := slog.New(slog.NewTextHandler(logs, nil))
	log.Info("before serve")
	Serve(&testPlugin{log: log}, WithLogWriter(logs))
}

func (p *testPlugin) Describe(context.Context) (Description, error) {
	p.log.Info("describe called")
	return Description{Name: "test", Version: "0.0.1", InstanceID: "instance-1", PID: os.Getpid()}, nil
}

func (p *testPlugin) Start(context.Context, map[string]string) (string, error) {
	p.log.Info("started")
	return "", nil
}

func (p *testPlugin) Stop(_ context.Context, reason string) error {
	for i := range stopLines {
		p.log.Info("stopping", "reason", reason, "line", i)
	}
	return nil
}

func (p *testPlugin) Health(context.Context) (Health, error) {
	return Health{Ready: true, Status: "ready"}, nil
}

// TestServeLogsOverTheStream launches this test binary as a plugin: the
// lines it logs after Serve arrive over go-plugin's stdio stream, every
// one of them before Stop returns, and never on the raw stderr too.
func TestServeLogsOverTheStream(t *testing.T) {
	var stream, raw syncBuffer
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	// A race-enabled plugin would otherwise linger a second at exit.
	cmd.Env = append(os.Environ(), "GORACE=atexit_sleep_ms=0")
	cfg := NewClientConfig(cmd, hclog.NewNullLogger(), &stream)
	cfg.Stderr = &raw
	client := plugin.NewClient(cfg)
	defer client.Kill()
	p, err := Dispense(client)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if d, err := p.Describe(ctx); err != nil || d.InstanceID != "instance-1" {
		t.Fatalf("describe: %+v, %v", d, err)
	}
	if _, err := p.Start(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if err := p.Stop(ctx, "test"); err != nil {
		t.Fatal(err)
	}
	got := stream.String()
	for _, want := range []string{"describe called", "started", fmt.Sprintf("line=%d", stopLines-1)} {
		if !strings.Contains(got, want) {
			t.Errorf("stream lacks %q when Stop returns:\n%s", want, got)
		}
	}
	if n := strings.Count(got, "msg=stopping reason=test"); n != stopLines {
		t.Errorf("%d stop lines on the stream, want %d", n, stopLines)
	}
	if strings.Contains(got, flushPrefix) {
		t.Error("a flush marker was passed on")
	}
	// After Serve returns, Serve stops the plugin once more: those lines go
	// to the raw stderr, the stream being gone.
	client.Kill()
	r := raw.String()
	if !strings.Contains(r, "before serve") || strings.Contains(r, "describe called") || strings.Contains(r, "reason=test") {
		t.Errorf("raw stderr must carry only what was logged outside Serve:\n%s", r)
	}
	if !strings.Contains(r, `msg=stopping reason="runtime shut the plugin down"`) {
		t.Errorf("what the plugin logged after Serve returned is lost:\n%s", r)
	}
	if strings.Contains(r, "DATA RACE") {
		t.Errorf("the plugin process raced:\n%s", r)
	}
}
