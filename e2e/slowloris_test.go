package e2e

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/home-console/client-manager/pkg/agentproto"
)

// Timeouts the slowloris tests configure (both processes), small so that
// the tests are quick.
const (
	lorisReadHeader = 2 * time.Second
	lorisRead       = 3 * time.Second
	lorisIdle       = 2 * time.Second
	// lorisSlack is how late a close may be on this busy machine.
	lorisSlack = 3 * time.Second
	// lorisConns is the number of attacking connections, spread evenly
	// over the kinds.
	lorisConns = 2000
)

// lorisEnv configures prefix's (CLIENT_MANAGER or RUNTIME) timeouts.
func lorisEnv(prefix string) []string {
	return []string{
		prefix + "_READ_HEADER_TIMEOUT=" + lorisReadHeader.String(), prefix + "_READ_TIMEOUT=" + lorisRead.String(),
		prefix + "_WRITE_TIMEOUT=3s", prefix + "_IDLE_TIMEOUT=" + lorisIdle.String(),
	}
}

// attackKind is one way to hold a connection open without being served.
type attackKind struct {
	name string
	// send is written at once after connecting.
	send string
	// trickle: then one more header byte every 500 ms, never the end.
	trickle bool
	// answered: the server answers send first; the bound runs from the
	// answer (the connection is then kept alive and idle).
	answered bool
	// bound is the documented time from connecting (or the answer) to
	// the server's close.
	bound time.Duration
}

// request is an HTTP/1.1 request header for 127.0.0.1 with extra lines.
func request(method, path string, lines ...string) string {
	return method + " " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\n" + strings.Join(append(lines, ""), "\r\n") + "\r\n"
}

// attackKinds returns the kinds against a server: nothing sent, a header
// trickled, a body never sent (to the path halfBody), and idle after each
// of the requests in idle (name: request) once answered.
func attackKinds(halfBody string, idle ...string) []attackKind {
	kinds := []attackKind{
		{name: "nothing sent", bound: lorisReadHeader},
		{name: "header trickled", send: "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ", trickle: true, bound: lorisReadHeader},
		{name: "body never sent", send: request("POST", halfBody, "Content-Type: application/json", "Content-Length: 100"), bound: lorisRead},
	}
	for i := 0; i+1 < len(idle); i += 2 {
		kinds = append(kinds, attackKind{name: "idle after " + idle[i], send: idle[i+1], answered: true, bound: lorisIdle})
	}
	return kinds
}

// victim is one attacking connection and what happened to it.
type victim struct {
	kind              int
	start, closed     time.Time // start: connected, or answered
	answerErr, status string
}

// hold opens a connection of kind k and records when the server closes it.
func hold(t *testing.T, addr string, kind int, k attackKind, wg *sync.WaitGroup) *victim {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("connection %s: %v", k.name, err)
	}
	v := &victim{kind: kind, start: time.Now()}
	if _, err := io.WriteString(nc, k.send); err != nil {
		t.Fatal(err)
	}
	closed := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(closed)
		defer nc.Close()
		_ = nc.SetReadDeadline(time.Now().Add(time.Minute))
		br := bufio.NewReader(nc)
		if k.answered {
			res, err := http.ReadResponse(br, nil)
			if err != nil {
				v.answerErr = err.Error()
				return
			}
			_, _ = io.Copy(io.Discard, res.Body)
			v.start, v.status = time.Now(), res.Status
		}
		_, _ = io.Copy(io.Discard, br) // until the server closes (EOF or reset)
		v.closed = time.Now()
	}()
	if k.trickle {
		go func() {
			for {
				select {
				case <-closed:
					return
				case <-time.After(500 * time.Millisecond):
					if _, err := io.WriteString(nc, "x"); err != nil {
						return
					}
				}
			}
		}()
	}
	return v
}

// probeHealth requests url on a new connection every 25 ms until stop is
// closed and returns the latencies; a failed probe is a test error.
func probeHealth(t *testing.T, url string, stop <-chan struct{}) []time.Duration {
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	var lat []time.Duration
	for {
		select {
		case <-stop:
			return lat
		case <-time.After(25 * time.Millisecond):
		}
		t0 := time.Now()
		res, err := client.Get(url)
		if err != nil {
			t.Errorf("health probe during the attack: %v", err)
			continue
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		lat = append(lat, time.Since(t0))
		if res.StatusCode != http.StatusOK {
			t.Errorf("health probe during the attack: %d", res.StatusCode)
		}
	}
}

// quantile returns the q-quantile of sorted durations.
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(q*float64(len(sorted))))]
}

// slowloris opens lorisConns connections, as many of every kind, against addr
// while probing healthURL, waits for the server to close them all, and
// checks that each was closed within its bound (plus slack) and that
// every probe answered.
func slowloris(t *testing.T, addr, healthURL string, kinds []attackKind) {
	stop := make(chan struct{})
	probes := make(chan []time.Duration, 1)
	go func() { probes <- probeHealth(t, healthURL, stop) }()
	var wg sync.WaitGroup
	var victims []*victim
	began := time.Now()
	perKind := (lorisConns + len(kinds) - 1) / len(kinds)
	for i := range perKind {
		for k := range kinds {
			victims = append(victims, hold(t, addr, k, kinds[k], &wg))
		}
		if i%50 == 49 {
			time.Sleep(5 * time.Millisecond) // let the server accept as we go
		}
	}
	opened := time.Since(began)
	wg.Wait()
	close(stop)
	lat := <-probes
	slices.Sort(lat)
	t.Logf("%d connections opened in %v, all closed %v after the first; /health during the attack: %d probes, p50 %v p99 %v max %v",
		len(victims), opened.Round(time.Millisecond), time.Since(began).Round(time.Millisecond), len(lat),
		quantile(lat, 0.5).Round(time.Microsecond), quantile(lat, 0.99).Round(time.Microsecond), quantile(lat, 1).Round(time.Microsecond))
	checkCloses(t, kinds, victims)
	if len(lat) < 10 {
		t.Errorf("only %d health probes answered", len(lat))
	}
	if p99 := quantile(lat, 0.99); p99 > time.Second {
		t.Errorf("/health p99 %v during the attack", p99)
	}
}

// checkCloses checks and reports, per kind, how long after its start the
// server closed each connection.
func checkCloses(t *testing.T, kinds []attackKind, victims []*victim) {
	t.Helper()
	for k, kind := range kinds {
		var took []time.Duration
		for _, v := range victims {
			switch {
			case v.kind != k:
			case v.answerErr != "":
				t.Errorf("%s: no answer before the close: %s", kind.name, v.answerErr)
			case v.closed.IsZero():
				t.Errorf("%s: still open after a minute", kind.name)
			default:
				took = append(took, v.closed.Sub(v.start))
			}
		}
		slices.Sort(took)
		if len(took) == 0 {
			continue
		}
		t.Logf("%-18s %d closed %v to %v after %s (bound %v)", kind.name+":", len(took),
			took[0].Round(time.Millisecond), took[len(took)-1].Round(time.Millisecond), map[bool]string{true: "the answer", false: "connecting"}[kind.answered], kind.bound)
		if late := took[len(took)-1]; late > kind.bound+lorisSlack {
			t.Errorf("%s: a connection was closed %v after %s, bound %v", kind.name, late, map[bool]string{true: "its answer", false: "connecting"}[kind.answered], kind.bound)
		}
	}
}

// TestSlowloris attacks a standalone client manager with 2,000 idle and
// half-sent connections (nothing sent, a header trickled, a body never
// sent, idle after a 200, idle after a 426 or a 401 from the agent
// endpoint): each is closed within its configured timeout, and /health
// keeps answering meanwhile.
func TestSlowloris(t *testing.T) {
	t.Parallel()
	port := freePort(t)
	startStandalone(t, port, t.TempDir(), lorisEnv("CLIENT_MANAGER")...)
	addr := "127.0.0.1:" + itoa(port)
	unauthorized := request("GET", agentproto.PathWebSocket, "Connection: Upgrade", "Upgrade: websocket",
		"Sec-WebSocket-Version: 13", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Protocol: "+agentproto.Subprotocol)
	kinds := attackKinds("/api/commands/agt_none",
		"200", request("GET", "/health"), "426", request("GET", agentproto.PathWebSocket), "401", unauthorized)
	slowloris(t, addr, "http://"+addr+"/health", kinds)
}

// TestSlowlorisRuntime is TestSlowloris against the runtime's port (its
// admin API, with a token so that a request without it gets 401).
func TestSlowlorisRuntime(t *testing.T) {
	t.Parallel()
	r := startRuntime(t, plugins(t, map[string]string{}), append(lorisEnv("RUNTIME"), "RUNTIME_ADMIN_TOKEN=loris-token")...)
	addr := strings.TrimPrefix(r.admin, "http://")
	kinds := attackKinds("/api/admin/v1/plugins/none/restart",
		"200", request("GET", "/api/admin/v1/health"), "401", request("GET", "/api/admin/v1/plugins"))
	slowloris(t, addr, r.admin+"/api/admin/v1/health", kinds)
}

// metricValue returns the sum of the samples of a metric in a /metrics
// page (-1 when there is none).
func metricValue(page, name string) float64 {
	sum, seen := 0.0, false
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `(\{[^}]*\})? (\S+)$`)
	for _, m := range re.FindAllStringSubmatch(page, -1) {
		v, err := strconv.ParseFloat(m[2], 64)
		if err == nil {
			sum, seen = sum+v, true
		}
	}
	if !seen {
		return -1
	}
	return sum
}

// TestDescriptorExhaustionKeepsHealth runs the client manager with only
// 256 file descriptors and opens 1,000 connections that wait (kept-alive
// idle ones, and ones that never send anything): the process sheds the
// longest-waiting ones to stay within its limit (256 less 128 reserved),
// and /health keeps answering.
func TestDescriptorExhaustionKeepsHealth(t *testing.T) {
	t.Parallel()
	const nofile, limit, conns = 256, 256 - 128, 1000
	port := freePort(t)
	cmd := exec.Command("sh", "-c", `ulimit -n `+itoa(nofile)+` && exec "$0"`, filepath.Join(bin, "client-manager"))
	launchStandalone(t, cmd, port, t.TempDir(), "CLIENT_MANAGER_READ_HEADER_TIMEOUT=10m")
	addr := "127.0.0.1:" + itoa(port)
	served := 0
	for i := range conns {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		defer nc.Close()
		if i%2 == 1 {
			continue // never sends anything
		}
		_ = nc.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := io.WriteString(nc, request("GET", "/health")); err == nil {
			if res, err := http.ReadResponse(bufio.NewReader(nc), nil); err == nil && res.StatusCode == http.StatusOK {
				served++
			}
		}
	}
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	var lat []time.Duration
	for range 20 {
		t0 := time.Now()
		res, err := client.Get("http://" + addr + "/health")
		if err != nil {
			t.Fatalf("/health with %d connections held open: %v", conns, err)
		}
		res.Body.Close()
		lat = append(lat, time.Since(t0))
	}
	code, page := get("http://" + addr + "/metrics")
	open, shed := metricValue(page, "cm_open_connections"), metricValue(page, "cm_connections_shed_total")
	slices.Sort(lat)
	t.Logf("RLIMIT_NOFILE %d: %d of %d requests while connecting served; then /health p50 %v max %v; open %v, shed %v",
		nofile, served, conns/2, quantile(lat, 0.5), quantile(lat, 1), open, shed)
	if code != http.StatusOK || open < 1 || open > limit || shed < conns-limit {
		t.Errorf("metrics %d: cm_open_connections %v (limit %d), cm_connections_shed_total %v (want at least %d)",
			code, open, limit, shed, conns-limit)
	}
	if served < conns/2-5 {
		t.Errorf("only %d of %d requests were served while connecting", served, conns/2)
	}
}

// TestLongLivedOutlastTimeouts sets every timeout of both processes to
// 1 s: on the client manager's port and through the runtime's one-port
// proxy, an event stream and a ?wait= long poll (a 3 s command) outlast
// them, and the agent's WebSocket stays up.
func TestLongLivedOutlastTimeouts(t *testing.T) {
	t.Parallel()
	port, dataDir := freePort(t), t.TempDir()
	env := []string{"CLIENT_MANAGER_PORT=" + itoa(port), "CLIENT_MANAGER_DATA_DIR=" + dataDir}
	for _, p := range []string{"CLIENT_MANAGER", "RUNTIME"} {
		for _, v := range []string{"READ_HEADER", "READ", "WRITE", "IDLE"} {
			env = append(env, p+"_"+v+"_TIMEOUT=1s")
		}
	}
	r := startRuntime(t, plugins(t, map[string]string{"client_manager": mounted(clientManager(), "/cm")}), env...)
	r.waitState(cm, "running", 20*time.Second)
	direct := "http://127.0.0.1:" + itoa(port)
	_, agentLogs := startAgentBinary(t, "--server", direct, "--enroll-token", "@"+filepath.Join(dataDir, "bootstrap-token"),
		"--credential-file", filepath.Join(t.TempDir(), "credential.json"), "--allow", "sleep")
	id := waitOnline(t, direct, 15*time.Second)
	bases := []string{direct, r.admin + "/cm"}
	var streams []*eventLog
	for _, base := range bases {
		streams = append(streams, recordEvents(t, base+"/api/events"))
	}
	var commands []string
	for _, base := range bases {
		t0 := time.Now()
		var cmd struct{ ID, Status string }
		// A fresh connection: a kept-alive one from an earlier request may
		// be closed by the 1 s idle timeout just as this POST is sent, and
		// net/http does not retry a POST.
		client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		res, err := client.Post(base+"/api/commands/"+id+"?wait=20s", "application/json", strings.NewReader(`{"command":"sleep","args":["3"]}`))
		if err != nil {
			t.Fatalf("long poll via %s: %v", base, err)
		}
		err = json.NewDecoder(res.Body).Decode(&cmd)
		res.Body.Close()
		if err != nil || res.StatusCode != http.StatusOK || cmd.Status != "completed" {
			t.Fatalf("long poll via %s: %d %+v %v after %v", base, res.StatusCode, cmd, err, time.Since(t0))
		}
		commands = append(commands, cmd.ID)
	}
	for i, s := range streams {
		for _, c := range commands {
			if !s.waitFinished(c, 5*time.Second) {
				t.Errorf("the event stream via %s did not get %s's command.finished", bases[i], c)
			}
		}
	}
	if n := strings.Count(agentLogs.String(), "msg=connected"); n != 1 {
		t.Errorf("the agent connected %d times, want once", n)
	}
}
