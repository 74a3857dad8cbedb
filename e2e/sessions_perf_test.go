package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// perfRun is true under `make bench-sessions` (CM_PERF=1): full sizes and
// the targets asserted. Otherwise the same code runs small and
// checks only what no machine load excuses (no starvation, no growth).
var perfRun = os.Getenv("CM_PERF") == "1"

// percentile returns the p-th percentile (0..100) of ds.
func percentile(ds []time.Duration, p float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p/100))]
}

// rssKiB reads a process's resident set size.
func rssKiB(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return n
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// rssPeak samples a process's RSS every 20 ms until stop is called, which
// returns the largest sample in KiB.
func rssPeak(t *testing.T, pid int) (stop func() int) {
	done, peak := make(chan struct{}), make(chan int, 1)
	go func() {
		top := 0
		for {
			if b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status"); err == nil {
				if m := vmRSS.FindSubmatch(b); m != nil {
					n, _ := strconv.Atoi(string(m[1]))
					top = max(top, n)
				}
			}
			select {
			case <-done:
				peak <- top
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	return func() int { close(done); return <-peak }
}

var vmRSS = regexp.MustCompile(`VmRSS:\s+(\d+) kB`)

// keystrokeLatency types n single characters into a shell's line (the
// PTY echoes them) and returns each keystroke's time to its echo at the
// operator.
func keystrokeLatency(t *testing.T, tm *term, n int) []time.Duration {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(n)*50*time.Millisecond+10*time.Second)
	defer cancel()
	ds := make([]time.Duration, 0, n)
	for i := range n {
		c := byte('a' + i%26)
		start := time.Now()
		tm.send(string([]byte{c}))
		for {
			typ, b, err := tm.ws.Read(ctx)
			if err != nil {
				t.Fatalf("keystroke %d: %v", i, err)
			}
			if typ == websocket.MessageBinary && slices.Contains(b, c) {
				break
			}
		}
		ds = append(ds, time.Since(start))
		if i%64 == 63 {
			tm.send("\x15") // Ctrl-U: clear the line
		}
	}
	tm.send("\x15")
	return ds
}

// commandLatency runs uname on f's agent through the API n times, one at a
// time, and returns each round trip. It may run on any goroutine.
func commandLatency(f *sessionFixture, n int, gap time.Duration) ([]time.Duration, error) {
	var ds []time.Duration
	for range n {
		start := time.Now()
		res, err := httpc.Post(f.base+"/api/commands/"+f.id, "application/json", strings.NewReader(`{"command":"uname"}`))
		if err != nil {
			return ds, err
		}
		var c struct{ Status string }
		_ = json.NewDecoder(res.Body).Decode(&c)
		res.Body.Close()
		if res.StatusCode != http.StatusOK || c.Status != "completed" {
			return ds, fmt.Errorf("uname = %d %s", res.StatusCode, c.Status)
		}
		ds = append(ds, time.Since(start))
		time.Sleep(gap)
	}
	return ds, nil
}

// TestTerminalPerf measures keystroke → echo through the client manager,
// terminal throughput with `cat` of a large file, and a command's round
// trip to the same agent while the terminal is saturated.
func TestTerminalPerf(t *testing.T) {
	t.Parallel()
	f := startSessionFixture(t, nil, "--allow-terminal", "--terminal-shell", "/bin/sh")
	tm := openTerminal(t, f, "")
	keys := keystrokeLatency(t, tm, map[bool]int{true: 2000, false: 300}[perfRun])
	t.Logf("keystroke_echo p50=%s p99=%s max=%s (n=%d)", percentile(keys, 50), percentile(keys, 99), slices.Max(keys), len(keys))
	idle, err := commandLatency(f, 40, 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	size := map[bool]int{true: 256 << 20, false: 32 << 20}[perfRun]
	file := writeText(t, size)
	var busy []time.Duration
	var busyErr error
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
				ds, err := commandLatency(f, 1, 20*time.Millisecond)
				busy = append(busy, ds...)
				if err != nil {
					busyErr = err
					return
				}
			}
		}
	}()
	mbps := catThroughput(t, tm, file, size)
	close(stop)
	wg.Wait()
	if busyErr != nil {
		t.Fatalf("command during cat: %v", busyErr)
	}
	t.Logf("terminal_throughput=%.1f MB/s (%d MiB); uname idle p50=%s p99=%s; during cat p50=%s p99=%s (n=%d)",
		mbps, size>>20, percentile(idle, 50), percentile(idle, 99), percentile(busy, 50), percentile(busy, 99), len(busy))
	if len(busy) < 3 || percentile(busy, 99) > time.Second {
		t.Fatalf("commands starved while the terminal streamed: %d commands, p99 %s", len(busy), percentile(busy, 99))
	}
	if perfRun && (percentile(keys, 99) > 5*time.Millisecond || mbps < 20 || percentile(busy, 50) > 2*percentile(idle, 50)) {
		t.Errorf("targets missed: keystroke p99 %s (≤5ms), throughput %.1f MB/s (≥20), uname p50 busy %s vs idle %s (≤2×)",
			percentile(keys, 99), mbps, percentile(busy, 50), percentile(idle, 50))
	}
}

// writeText writes size bytes of printable lines to a temporary file.
func writeText(t *testing.T, size int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "big.txt")
	line := []byte(strings.Repeat("0123456789abcdef", 7) + "xyz\n")
	b := make([]byte, 0, size)
	for len(b)+len(line) <= size {
		b = append(b, line...)
	}
	b = append(b, line[:size-len(b)]...)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// catThroughput cats file in the session and returns MB/s from the command
// until its end marker arrives.
func catThroughput(t *testing.T, tm *term, file string, size int) float64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	tm.send("cat " + file + "; echo END$((6*7))MARK\n")
	got, tail := 0, ""
	for {
		typ, b, err := tm.ws.Read(ctx)
		if err != nil {
			t.Fatalf("cat: %v after %d bytes", err, got)
		}
		if typ != websocket.MessageBinary {
			continue
		}
		got += len(b)
		tail = tail[max(0, len(tail)-16):] + string(b)
		if strings.Contains(tail, "END42MARK") {
			break
		}
	}
	elapsed := time.Since(start)
	if got < size {
		t.Fatalf("cat delivered %d bytes, file has %d", got, size)
	}
	return float64(got) / 1e6 / elapsed.Seconds()
}

// chachaReader is a repeatable stream of random bytes.
func chachaReader(size int64) io.Reader {
	var seed [32]byte
	return io.LimitReader(rand.NewChaCha8(seed), size)
}

// TestFileTransferPerf uploads and downloads a large file (1 GiB under
// CM_PERF=1, else 128 MiB) and reports the rate each way and the client
// manager's RSS growth during each.
func TestFileTransferPerf(t *testing.T) {
	t.Parallel()
	size := int64(map[bool]int{true: 1 << 30, false: 128 << 20}[perfRun])
	share := t.TempDir()
	f := startSessionFixture(t, nil, "--files-root", share, "--files-max-size", strconv.FormatInt(size, 10))
	h := sha256.New()
	_, _ = io.Copy(h, chachaReader(size))
	digest := hex.EncodeToString(h.Sum(nil))
	dest := filepath.Join(share, "perf.bin")
	pid := f.cm.cmd.Process.Pid
	before := rssKiB(t, pid)
	peak := rssPeak(t, pid)
	start := time.Now()
	code, body, _ := upload(t, f.fileURL("", dest, ""), chachaReader(size), size, map[string]string{"X-Content-SHA256": digest})
	up := time.Since(start)
	upPeak := peak()
	if code != http.StatusCreated {
		t.Fatalf("upload = %d %s", code, body)
	}
	before2 := rssKiB(t, pid)
	peak = rssPeak(t, pid)
	start = time.Now()
	got := downloadDigest(t, f.fileURL("", dest, ""))
	down := time.Since(start)
	downPeak := peak()
	if got != digest {
		t.Fatalf("download digest %s, want %s", got, digest)
	}
	upRate, downRate := float64(size)/1e6/up.Seconds(), float64(size)/1e6/down.Seconds()
	t.Logf("upload %d MiB: %.1f MB/s, RSS %d→peak %d KiB (+%d); download: %.1f MB/s, RSS %d→peak %d KiB (+%d)",
		size>>20, upRate, before, upPeak, upPeak-before, downRate, before2, downPeak, downPeak-before2)
	if upPeak-before > 32<<10 || downPeak-before2 > 32<<10 {
		t.Errorf("client-manager RSS grew by more than 32 MiB during a transfer")
	}
	if perfRun && (upRate < 50 || downRate < 50) {
		t.Errorf("targets missed: upload %.1f MB/s, download %.1f MB/s (≥50 each)", upRate, downRate)
	}
}

// downloadDigest GETs target and returns the sha-256 of the body, after
// checking the trailer carries the same.
func downloadDigest(t *testing.T, target string) string {
	t.Helper()
	res, err := http.Get(target)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	h := sha256.New()
	if _, err := io.Copy(h, res.Body); err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("download = %d %v", res.StatusCode, err)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if tr := res.Trailer.Get("X-Content-SHA256"); tr != sum {
		t.Fatalf("trailer digest %q, body's %s", tr, sum)
	}
	return sum
}

// TestManySessions opens one terminal on each of N agents (100 under
// CM_PERF=1, else 10) at once, checks every one answers, and reports the
// echo latency across them and the client manager's RSS.
func TestManySessions(t *testing.T) {
	t.Parallel()
	n := map[bool]int{true: 100, false: 10}[perfRun]
	port, dataDir := freePort(t), t.TempDir()
	cm, _ := startStandalone(t, port, dataDir)
	base := "http://127.0.0.1:" + itoa(port)
	token := createEnrollmentToken(t, base, n)
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(token), 0o600); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		startAgentBinary(t, "--server", base, "--enroll-token", "@"+tokenFile, "--name", fmt.Sprintf("a%03d", i),
			"--credential-file", filepath.Join(t.TempDir(), "credential.json"), "--allow-terminal", "--terminal-shell", "/bin/sh")
	}
	ids := waitOnlineCount(t, base, n, 60*time.Second)
	before := rssKiB(t, cm.cmd.Process.Pid)
	terms := make([]*term, n)
	for i, id := range ids {
		terms[i] = openTerminal(t, &sessionFixture{base: base, id: id}, "")
	}
	var all []time.Duration
	for round := range 5 {
		for i, tm := range terms {
			start := time.Now()
			tm.send(fmt.Sprintf("echo r%d-s%d-$((1+1))\n", round, i))
			tm.expect(regexp.MustCompile(fmt.Sprintf(`r%d-s%d-2`, round, i)), 10*time.Second)
			all = append(all, time.Since(start))
		}
	}
	after := rssKiB(t, cm.cmd.Process.Pid)
	t.Logf("sessions=%d echo p50=%s p99=%s max=%s; client-manager RSS %d KiB idle → %d KiB with the sessions (+%d KiB, %d KiB/session)",
		n, percentile(all, 50), percentile(all, 99), slices.Max(all), before, after, after-before, (after-before)/n)
}
