package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// mountSmallDisk mounts a tmpfs of size (e.g. "16m") on a fresh directory
// and unmounts it when the test ends (after everything using it stopped:
// cleanups run last-registered first). It skips the test, saying why,
// where mounting is not permitted.
func mountSmallDisk(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size+",mode=0700"); err != nil {
		t.Skipf("a full disk needs a small filesystem to fill: mounting a %s tmpfs on %s failed (%v; run as root "+
			"or with CAP_SYS_ADMIN). Without it, the fault-injecting store tests of internal/dispatch "+
			"(TestHeldResultIsStoredWhenTheDiskRecovers), internal/api (TestNoActionWithoutItsAuditEntry) and "+
			"internal/sqlite (TestWritableFollowsWrites) cover the same behaviour", size, dir, err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// filler keeps a file growing until the disk under it is full, and keeps
// it full (taking any space freed meanwhile) until stop.
type filler struct {
	path string
	quit chan struct{}
	done chan struct{}
}

// fillDisk starts a filler of path's disk and returns once the disk is
// full.
func fillDisk(t *testing.T, path string) *filler {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	fl := &filler{path: path, quit: make(chan struct{}), done: make(chan struct{})}
	full := make(chan struct{})
	go func() {
		defer close(fl.done)
		defer f.Close()
		var once sync.Once
		for chunk := make([]byte, 1<<20); ; {
			_, err := f.Write(chunk)
			switch {
			case err == nil:
				continue
			case !errors.Is(err, syscall.ENOSPC):
				t.Errorf("filling the disk: %v", err)
			case len(chunk) > 4096:
				chunk = chunk[:len(chunk)/4]
				continue
			}
			once.Do(func() { close(full) })
			select {
			case <-fl.quit:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	select {
	case <-full:
	case <-time.After(30 * time.Second):
		t.Fatal("the disk is not full after 30 s")
	}
	t.Cleanup(fl.stop)
	return fl
}

// stop ends the filling and deletes the file, freeing the disk.
func (fl *filler) stop() {
	select {
	case <-fl.quit:
		return
	default:
	}
	close(fl.quit)
	<-fl.done
	_ = os.Remove(fl.path)
}

// apiAnswer is a REST answer: status, error code and message, and body.
type apiAnswer struct {
	status        int
	code, message string
	body          []byte
}

// call sends method url with a JSON body and returns the answer.
func call(t *testing.T, method, url, body string) apiAnswer {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := httpc.Do(req)
	if err != nil {
		return apiAnswer{}
	}
	defer res.Body.Close()
	var a apiAnswer
	a.status = res.StatusCode
	var e struct {
		Error struct{ Code, Message string }
	}
	dec := json.NewDecoder(res.Body)
	var raw json.RawMessage
	if dec.Decode(&raw) == nil {
		a.body = raw
		_ = json.Unmarshal(raw, &e)
	}
	a.code, a.message = e.Error.Code, e.Error.Message
	return a
}

// waitReady polls /health/ready until it answers status and returns when
// it first did, with the answer.
func waitReady(t *testing.T, base string, status int, within time.Duration) (time.Time, apiAnswer) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		a := call(t, "GET", base+"/health/ready", "")
		if a.status == status {
			return time.Now(), a
		}
		if time.Now().After(deadline) {
			t.Fatalf("/health/ready did not answer %d within %s (last %d %s)", status, within, a.status, a.body)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// diskCommand is the part of a command TestDiskFull reads.
type diskCommand struct {
	ID       string `json:"id"`
	Status   string `json:"status"`
	ExitCode *int   `json:"exit_code"`
	Stdout   string `json:"stdout"`
	Error    string `json:"error"`
}

func command(t *testing.T, base, id string) diskCommand {
	t.Helper()
	var c diskCommand
	if a := call(t, "GET", base+"/api/commands/"+id, ""); a.status != http.StatusOK || json.Unmarshal(a.body, &c) != nil {
		t.Fatalf("GET command %s = %d %s", id, a.status, a.body)
	}
	return c
}

// TestDiskFull fills the data dir (a 16 MiB tmpfs) while commands run on a
// real agent: writes answer 503 storage_unavailable with the reason,
// /health/ready 503 with it, and the commands, which finish on the agent,
// are neither timed out nor lost, long past their deadline. Once the
// filler is deleted everything resumes by itself: ready 200, the held
// results stored with their real status and output, every audit entry
// present and finished.
func TestDiskFull(t *testing.T) {
	t.Parallel()
	dataDir := mountSmallDisk(t, "16m")
	port := freePort(t)
	startStandalone(t, port, dataDir)
	base := "http://127.0.0.1:" + itoa(port)
	_, agentLogs := startAgentBinary(t, "--server", base, "--enroll-token", "@"+filepath.Join(dataDir, "bootstrap-token"),
		"--credential-file", filepath.Join(t.TempDir(), "credential.json"), "--allow", "sh")
	agent := waitOnline(t, base, 15*time.Second)

	// Commands that finish 2 s from now, with the disk full by then.
	const n = 3
	ids := make([]string, n)
	for i := range ids {
		a := call(t, "POST", base+"/api/commands/"+agent+"/async",
			fmt.Sprintf(`{"command":"sh","args":["-c","sleep 2; echo done-%d"],"timeout":"3s"}`, i))
		var c diskCommand
		if a.status != http.StatusAccepted || json.Unmarshal(a.body, &c) != nil {
			t.Fatalf("submit = %d %s", a.status, a.body)
		}
		ids[i] = c.ID
	}
	submitted := time.Now()
	fl := fillDisk(t, filepath.Join(dataDir, "filler"))
	filled := time.Now()
	checkRefusals(t, base, agent)
	notReady, a := waitReady(t, base, http.StatusServiceUnavailable, 30*time.Second)
	if a.code != "storage_unavailable" || !strings.Contains(a.message, "full") {
		t.Fatalf("/health/ready while full = %d %s, want storage_unavailable naming the full disk", a.status, a.body)
	}
	waitFinishedOnAgent(t, agentLogs, n)
	// Each command's deadline is its timeout (3 s) plus the result grace
	// (15 s) after its dispatch: stay full well past it.
	for time.Since(submitted) < 22*time.Second {
		if a := call(t, "GET", base+"/health/ready", ""); a.status != http.StatusServiceUnavailable || a.code != "storage_unavailable" {
			t.Fatalf("/health/ready = %d %s while the disk is full", a.status, a.body)
		}
		for _, id := range ids {
			if c := command(t, base, id); c.Status == "timed_out" || c.Status == "failed" || c.Status == "cancelled" {
				t.Fatalf("command %s ended %s (%s) while the disk was full", id, c.Status, c.Error)
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
	fl.stop()
	freed := time.Now()
	ready, _ := waitReady(t, base, http.StatusOK, 30*time.Second)
	stored := waitStored(t, base, ids)
	checkDiskAudit(t, base, agent, ids)
	t.Logf("fill->ready 503: %dms; free->ready 200: %dms; free->all held results stored: %dms",
		notReady.Sub(filled).Milliseconds(), ready.Sub(freed).Milliseconds(), stored.Sub(freed).Milliseconds())
}

// checkRefusals: on a full disk, a state-changing request answers 503
// storage_unavailable with the reason (it does nothing: its audit entry
// cannot be written), and reads still answer.
func checkRefusals(t *testing.T, base, agent string) {
	t.Helper()
	for _, r := range []struct{ method, path, body string }{
		{"POST", "/api/commands/" + agent, `{"command":"sh","args":["-c","echo refused"]}`},
		{"POST", "/api/enrollment-tokens", `{"uses":1}`},
		{"POST", "/api/tokens", `{"name":"full","role":"viewer"}`},
	} {
		var a apiAnswer
		// The first writes may still fit in space the store had; the
		// filler takes whatever is freed.
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			a = call(t, r.method, base+r.path, r.body)
			if a.status == http.StatusServiceUnavailable || time.Now().After(deadline) {
				break
			}
		}
		if a.status != http.StatusServiceUnavailable || a.code != "storage_unavailable" || !strings.Contains(a.message, "full") {
			t.Errorf("%s %s on a full disk = %d %s; want 503 storage_unavailable naming the full disk", r.method, r.path, a.status, a.body)
		}
	}
	if a := call(t, "GET", base+"/api/clients/"+agent, ""); a.status != http.StatusOK {
		t.Errorf("GET /api/clients/%s on a full disk = %d %s", agent, a.status, a.body)
	}
}

// waitFinishedOnAgent waits until the agent logged n finished commands.
func waitFinishedOnAgent(t *testing.T, logs *syncBuffer, n int) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); strings.Count(logs.String(), `msg="command finished"`) < n; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the agent did not finish %d commands; logs:\n%s", n, logs)
		}
	}
}

// waitStored waits until every command of ids is completed with the
// output its agent reported, and returns when they all were.
func waitStored(t *testing.T, base string, ids []string) time.Time {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; i < len(ids); {
		c := command(t, base, ids[i])
		switch {
		case c.Status == "completed" && c.ExitCode != nil && *c.ExitCode == 0 && c.Stdout == fmt.Sprintf("done-%d\n", i):
			i++
			continue
		case c.Status != "dispatched" && c.Status != "running":
			t.Fatalf("command %s ended %+v, want completed with done-%d", ids[i], c, i)
		case time.Now().After(deadline):
			t.Fatalf("command %s still %s 30 s after the disk was freed", ids[i], c.Status)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return time.Now()
}

// checkDiskAudit: every request that acted has its audit entry, finished
// with its status; none is left pending, and the refused ones left no
// trace of an action.
func checkDiskAudit(t *testing.T, base, agent string, ids []string) {
	t.Helper()
	var page struct {
		Items []struct{ Actor, Action, Target, Result, Detail string }
	}
	var a apiAnswer
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		a = call(t, "GET", base+"/api/audit?limit=1000", "")
		if a.status != http.StatusOK || json.Unmarshal(a.body, &page) != nil {
			t.Fatalf("GET /api/audit = %d %s", a.status, a.body)
		}
		if !strings.Contains(string(a.body), `"result":"pending"`) || time.Now().After(deadline) {
			break
		}
	}
	submits := 0
	for _, e := range page.Items {
		switch {
		case e.Result == "pending":
			t.Errorf("audit entry left pending: %+v", e)
		case e.Action == "POST /api/commands/:id/async" && e.Target == agent && e.Result == "202":
			submits++
		case e.Result != "503" && strings.HasPrefix(e.Action, "POST"):
			t.Errorf("audit entry of an action taken while the disk was full: %+v", e)
		}
	}
	if submits != len(ids) {
		t.Errorf("%d audit entries of the %d submitted commands: %s", submits, len(ids), a.body)
	}
	var tokens struct{ Total int }
	if a := call(t, "GET", base+"/api/enrollment-tokens", ""); a.status != http.StatusOK || json.Unmarshal(a.body, &tokens) != nil || tokens.Total != 1 {
		t.Errorf("enrollment tokens after the refused creation = %d %s; want only the bootstrap token", a.status, a.body)
	}
}
