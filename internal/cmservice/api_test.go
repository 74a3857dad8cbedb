package cmservice

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/home-console/client-manager/pkg/agent"
	"github.com/home-console/client-manager/pkg/agentproto"
)

func TestRunCommandAndHistory(t *testing.T) {
	svc, base := startService(t, Config{})
	e := startAgent(t, svc, base, "uname")

	code, cmd := call(t, "POST", base+"/api/commands/"+e.agentID, `{"command":"uname","args":["-a"],"timeout":"10s"}`)
	if code != http.StatusOK || cmd["status"] != "completed" || cmd["exit_code"] != float64(0) ||
		!strings.Contains(cmd["stdout"].(string), "Linux") {
		t.Fatalf("run uname = %d %v", code, cmd)
	}
	id := cmd["id"].(string)
	if code, got := call(t, "GET", base+"/api/commands/"+id, ""); code != 200 || got["stdout"] != cmd["stdout"] || got["requested_by"] != "loopback" {
		t.Fatalf("get command = %d %v", code, got)
	}
	if code, hist := call(t, "GET", base+"/api/commands?client_id="+e.agentID, ""); code != 200 || hist["total"] != float64(1) {
		t.Fatalf("history = %d %v", code, hist)
	}
	for query, want := range map[string]float64{"": 1, "?status=online": 1, "?status=offline": 0, "?label=room=lab": 1, "?label=room=attic": 0, "?q=test-ag": 1} {
		code, list := call(t, "GET", base+"/api/clients"+query, "")
		if code != 200 || list["total"] != want {
			t.Errorf("clients%s = %d total %v, want %v", query, code, list["total"], want)
		}
	}
	eventually(t, 5*time.Second, "finished command counted in /metrics", func() bool {
		res, err := http.Get(base + "/metrics")
		if err != nil {
			return false
		}
		defer res.Body.Close()
		body, _ := io.ReadAll(res.Body)
		return strings.Contains(string(body), `cm_commands_finished_total{status="completed"} 1`)
	})
	code, client := call(t, "GET", base+"/api/clients/"+e.agentID, "")
	if code != 200 || client["status"] != "online" || client["hostname"] == "" || client["os"] != "linux" || client["connected_at"] == nil {
		t.Fatalf("client = %d %v", code, client)
	}
}

func TestCommandRequestErrors(t *testing.T) {
	svc, base := startService(t, Config{MaxBodyBytes: 4096})
	e := startAgent(t, svc, base, "uname")
	offline := enrollOnly(t, svc, base)
	tests := []struct {
		name, path, body string
		status           int
		code             string
	}{
		{"unknown client", "/api/commands/agt_nope", `{"command":"uname"}`, 404, "unknown_client"},
		{"path traversal id", "/api/commands/..%2f..%2fetc", `{"command":"uname"}`, 404, "not_found"},
		{"malformed json", "/api/commands/" + e.agentID, `{"command":`, 400, "invalid_json"},
		{"empty body", "/api/commands/" + e.agentID, ``, 400, "invalid_json"},
		{"unknown field", "/api/commands/" + e.agentID, `{"command":"uname","shell":true}`, 400, "invalid_json"},
		{"wrong type", "/api/commands/" + e.agentID, `{"command":["uname"]}`, 400, "invalid_json"},
		{"trailing data", "/api/commands/" + e.agentID, `{"command":"uname"} {}`, 400, "invalid_json"},
		{"empty command", "/api/commands/" + e.agentID, `{"command":""}`, 400, "invalid_command"},
		{"bad timeout", "/api/commands/" + e.agentID, `{"command":"uname","timeout":"soon"}`, 400, "invalid_json"},
		{"huge timeout", "/api/commands/" + e.agentID, `{"command":"uname","timeout":"9999h"}`, 400, "invalid_command"},
		{"body too large", "/api/commands/" + e.agentID, `{"command":"uname","args":["` + strings.Repeat("a", 5000) + `"]}`, 413, "body_too_large"},
		{"offline agent", "/api/commands/" + offline, `{"command":"uname"}`, 409, "client_offline"},
		{"bad wait", "/api/commands/" + e.agentID + "?wait=forever", `{"command":"uname"}`, 400, "invalid_query"},
		{"cancel unknown", "/api/commands/cmd_nope/cancel", ``, 404, "not_found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := call(t, "POST", base+tt.path, tt.body)
			if code != tt.status || errCode(body) != tt.code {
				t.Fatalf("= %d %v, want %d %s", code, body, tt.status, tt.code)
			}
		})
	}
	if code, _ := call(t, "GET", base+"/health", ""); code != 200 {
		t.Fatalf("service unhealthy after bad input: %d", code)
	}
}

// enrollOnly enrolls an agent that never connects and returns its id.
func enrollOnly(t *testing.T, svc *Service, base string) string {
	t.Helper()
	code, body := call(t, "POST", base+"/api/enrollment-tokens", `{"name":"spare","uses":1}`)
	if code != http.StatusCreated {
		t.Fatalf("create enrollment token = %d %v", code, body)
	}
	code, enrolled := call(t, "POST", base+agentproto.PathEnroll, `{"token":"`+body["token"].(string)+`","name":"spare"}`)
	if code != http.StatusCreated {
		t.Fatalf("enroll = %d %v", code, enrolled)
	}
	return enrolled["agent_id"].(string)
}

func TestQueuedCommandIsDeliveredOnConnect(t *testing.T) {
	svc, base := startService(t, Config{})
	first := startAgent(t, svc, base, "uname")
	first.stop()
	eventually(t, 5*time.Second, "agent offline", func() bool { return !svc.app.hub.Online(first.agentID) })

	code, cmd := call(t, "POST", base+"/api/commands/"+first.agentID+"/async", `{"command":"uname","queue_if_offline":true,"ttl":"1m"}`)
	if code != http.StatusAccepted || cmd["status"] != "queued" {
		t.Fatalf("queue = %d %v", code, cmd)
	}
	runAgent(t, svc, base, agentproto.EnrollResponse{AgentID: first.agentID, Credential: first.credential}, "uname")
	eventually(t, 10*time.Second, "queued command completed", func() bool {
		_, got := call(t, "GET", base+"/api/commands/"+cmd["id"].(string), "")
		return got["status"] == "completed"
	})
}

func TestAgentSideRefusalsTimeoutsAndCancel(t *testing.T) {
	svc, base := startService(t, Config{})
	e := startAgent(t, svc, base, "sleep", "head")
	url := base + "/api/commands/" + e.agentID

	code, cmd := call(t, "POST", url, `{"command":"rm","args":["-rf","/tmp/x"]}`)
	if code != 200 || cmd["status"] != "failed" || !strings.Contains(cmd["error"].(string), "allow-list") {
		t.Fatalf("disallowed = %d %v", code, cmd)
	}
	code, cmd = call(t, "POST", url, `{"command":"sleep","args":["30"],"timeout":"1s"}`)
	if code != 200 || cmd["status"] != "timed_out" {
		t.Fatalf("timeout = %d %v", code, cmd)
	}
	code, cmd = call(t, "POST", url, `{"command":"head","args":["-c","3000000","/dev/zero"]}`)
	if code != 200 || cmd["status"] != "completed" || cmd["truncated"] != true || len(cmd["stdout"].(string)) > 1<<20 {
		t.Fatalf("truncation = %d status %v truncated %v len %d", code, cmd["status"], cmd["truncated"], len(cmd["stdout"].(string)))
	}

	code, cmd = call(t, "POST", url+"/async", `{"command":"sleep","args":["30"],"timeout":"60s"}`)
	if code != http.StatusAccepted {
		t.Fatalf("async = %d %v", code, cmd)
	}
	id := cmd["id"].(string)
	eventually(t, 5*time.Second, "command running", func() bool {
		_, got := call(t, "GET", base+"/api/commands/"+id, "")
		return got["status"] == "running"
	})
	start := time.Now()
	// 202 while the agent stops it, or 200 if it already reported.
	if code, got := call(t, "POST", base+"/api/commands/"+id+"/cancel", ""); code != http.StatusAccepted &&
		(code != http.StatusOK || got["status"] != "cancelled") {
		t.Fatalf("cancel = %d %v", code, got)
	}
	eventually(t, 5*time.Second, "command cancelled", func() bool {
		_, got := call(t, "GET", base+"/api/commands/"+id, "")
		return got["status"] == "cancelled"
	})
	t.Logf("cancel took %v", time.Since(start))
	if code, got := call(t, "POST", base+"/api/commands/"+id+"/cancel", ""); code != 409 || errCode(got) != "already_final" {
		t.Fatalf("second cancel = %d %v", code, got)
	}
}

func TestRevokeDisconnectsAgent(t *testing.T) {
	svc, base := startService(t, Config{})
	e := startAgent(t, svc, base, "uname")
	code, body := call(t, "DELETE", base+"/api/clients/"+e.agentID+"?revoke=true", "")
	if code != 200 || body["disconnected"] != true {
		t.Fatalf("revoke = %d %v", code, body)
	}
	select {
	case err := <-e.done:
		e.done <- err
		if !errors.Is(err, agent.ErrRevoked) {
			t.Fatalf("agent Run ended with %v, want ErrRevoked", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("revoked agent still running")
	}
	if _, c := call(t, "GET", base+"/api/clients/"+e.agentID, ""); c["status"] != "revoked" {
		t.Fatalf("client after revoke = %v", c)
	}
	if code, body := call(t, "POST", base+"/api/commands/"+e.agentID, `{"command":"uname"}`); code != 409 || errCode(body) != "client_revoked" {
		t.Fatalf("command to revoked = %d %v", code, body)
	}
}

func TestBatchByLabel(t *testing.T) {
	svc, base := startService(t, Config{})
	a := startAgent(t, svc, base, "uname")
	b := startAgent(t, svc, base, "uname")
	code, body := call(t, "POST", base+"/api/commands?wait=10s", `{"labels":{"room":"lab"},"command":"uname"}`)
	items, _ := body["items"].([]any)
	if code != http.StatusAccepted || len(items) != 2 {
		t.Fatalf("batch = %d %v", code, body)
	}
	seen := map[string]bool{}
	for _, it := range items {
		m := it.(map[string]any)
		cmd := m["command"].(map[string]any)
		if cmd["status"] != "completed" || cmd["batch_id"] != body["batch_id"] {
			t.Errorf("item %v", m)
		}
		seen[m["client_id"].(string)] = true
	}
	if !seen[a.agentID] || !seen[b.agentID] {
		t.Fatalf("batch reached %v", seen)
	}
	if code, body := call(t, "POST", base+"/api/commands", `{"command":"uname"}`); code != 400 || errCode(body) != "invalid_selector" {
		t.Fatalf("batch without selector = %d %v", code, body)
	}
}

func TestEventStream(t *testing.T) {
	svc, base := startService(t, Config{})
	e := startAgent(t, svc, base, "uname")
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/api/events?types=command.finished", nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if ct := res.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	code, cmd := call(t, "POST", base+"/api/commands/"+e.agentID+"/async", `{"command":"uname"}`)
	if code != http.StatusAccepted {
		t.Fatalf("async = %d %v", code, cmd)
	}
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		if sc.Text() != "event: command.finished" {
			continue
		}
		sc.Scan()
		var got struct {
			Seq       uint64    `json:"seq"`
			Type      string    `json:"type"`
			Time      time.Time `json:"time"`
			AgentID   string    `json:"client_id"`
			CommandID string    `json:"command_id"`
			Data      map[string]any
		}
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if err := json.Unmarshal([]byte(data), &got); !ok || err != nil || got.Seq == 0 || got.Time.IsZero() ||
			got.Type != "command.finished" || got.AgentID != e.agentID || got.CommandID != cmd["id"] ||
			len(got.Data) != 2 || got.Data["status"] != "completed" || got.Data["error"] != "" {
			t.Fatalf("command.finished data line %q (%v), want the documented fields", sc.Text(), err)
		}
		return
	}
	t.Fatalf("no command.finished event: %v", sc.Err())
}
