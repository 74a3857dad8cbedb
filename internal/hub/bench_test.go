package hub_test

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/home-console/client-manager/internal/hub"
	"github.com/home-console/client-manager/internal/hub/hubtest"
	"github.com/home-console/client-manager/pkg/agentproto"
)

// BenchmarkHubIdleConnections measures what an idle agent connection costs
// the server: HUB_IDLE_CONNS (default 2000) agents connect from a separate
// process (so client memory is not counted), say hello and go quiet. It
// reports Go heap+stack bytes, RSS bytes and goroutines per connection.
// b.N is ignored; run it with -benchtime=1x:
//
//	go test -run='^$' -bench=HubIdleConnections -benchtime=1x ./internal/hub/
func BenchmarkHubIdleConnections(b *testing.B) {
	n := 2000
	if v, err := strconv.Atoi(os.Getenv("HUB_IDLE_CONNS")); err == nil && v > 0 {
		n = v
	}
	env := hubtest.Start(b, hub.Config{
		LivenessTimeout: time.Hour, HeartbeatInterval: time.Hour,
		ConnectRate: 1e6, ConnectBurst: 1 << 20, MaxConnections: n + 10,
	})
	credFile := enrollMany(b, env, n)

	before := footprint()
	cmd := exec.Command(os.Args[0], "-test.run=^TestIdleClientProcess$")
	cmd.Env = append(os.Environ(), "HUB_IDLE_URL="+env.WSURL, "HUB_IDLE_CREDS="+credFile)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	deadline := time.Now().Add(3 * time.Minute)
	for env.Hub.Count() < n {
		if time.Now().After(deadline) {
			b.Fatalf("only %d of %d agents connected", env.Hub.Count(), n)
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond) // let handshake goroutines exit
	after := footprint()
	if path := os.Getenv("HUB_IDLE_HEAPPROFILE"); path != "" {
		f, _ := os.Create(path)
		_ = pprof.WriteHeapProfile(f)
		f.Close()
	}

	per := func(a, b uint64) float64 { return (float64(a) - float64(b)) / float64(n) }
	b.ReportMetric(per(after.heapStack, before.heapStack), "heap+stack-B/conn")
	b.ReportMetric(per(after.heap, before.heap), "heap-B/conn")
	b.ReportMetric(per(after.stack, before.stack), "stack-B/conn")
	b.ReportMetric(per(after.rss, before.rss), "rss-B/conn")
	b.ReportMetric(per(after.goroutines, before.goroutines), "goroutines/conn")
}

type usage struct {
	heap, stack, heapStack, rss, goroutines uint64
}

func footprint() usage {
	for range 6 {
		runtime.GC()
	}
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return usage{
		heap: m.HeapInuse, stack: m.StackInuse, heapStack: m.HeapInuse + m.StackInuse,
		rss: vmRSS(), goroutines: uint64(runtime.NumGoroutine()),
	}
}

func vmRSS() uint64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func enrollMany(b *testing.B, env *hubtest.Env, n int) string {
	ctx := context.Background()
	token, _, err := env.Enroll.CreateToken(ctx, "bench", n, 0, "bench")
	if err != nil {
		b.Fatal(err)
	}
	var sb strings.Builder
	for range n {
		resp, err := env.Enroll.Enroll(ctx, agentproto.EnrollRequest{Token: token}, "127.0.0.1:1")
		if err != nil {
			b.Fatal(err)
		}
		sb.WriteString(resp.Credential + "\n")
	}
	path := filepath.Join(b.TempDir(), "creds")
	if err := os.WriteFile(path, []byte(sb.String()), 0o600); err != nil {
		b.Fatal(err)
	}
	return path
}

// TestIdleClientProcess is the client side of BenchmarkHubIdleConnections,
// run in its own process; it is skipped otherwise.
func TestIdleClientProcess(t *testing.T) {
	url, credFile := os.Getenv("HUB_IDLE_URL"), os.Getenv("HUB_IDLE_CREDS")
	if url == "" {
		t.Skip("helper process of BenchmarkHubIdleConnections")
	}
	raw, err := os.ReadFile(credFile)
	if err != nil {
		t.Fatal(err)
	}
	env := &hubtest.Env{WSURL: url}
	for cred := range strings.FieldsSeq(string(raw)) {
		a := env.Connect(t, cred)
		go func() { _, _ = a.CloseStatus(context.Background()) }()
	}
	select {} // killed by the benchmark
}
