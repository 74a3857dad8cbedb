package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// restCall is an operator API case sent as the operator token named who
// ("" for none); "{agent}" in path is the suite's enrolled agent id.
func restCall(name, method, path, who, body string, status int, code string, headers ...string) badCase {
	return badCase{"rest", name, func(t *testing.T, s *badSuite) {
		s.expect(t, s.api(t, method, strings.ReplaceAll(path, "{agent}", s.agentID), who, body, headers...), status, code)
	}}
}

// enrollCall is a POST /api/enroll case.
func enrollCall(name, body string, status int, code string) badCase {
	return badCase{"rest", name, func(t *testing.T, s *badSuite) {
		s.expect(t, send(t, "POST", s.cm+"/api/enroll", strings.NewReader(body)), status, code)
	}}
}

func restCases() []badCase {
	const run = "/api/commands/{agent}"
	return []badCase{
		restCall("malformed JSON", "POST", run, "admin", `{"command":`, 400, "invalid_json"),
		restCall("wrong type", "POST", run, "admin", `{"command":["uname"]}`, 400, "invalid_json"),
		restCall("unknown field", "POST", run, "admin", `{"command":"uname","shell":"rm -rf /"}`, 400, "invalid_json"),
		restCall("trailing data", "POST", run, "admin", `{"command":"uname"}{"command":"rm"}`, 400, "invalid_json"),
		restCall("empty body", "POST", run, "admin", ``, 400, "invalid_json"),
		restCall("empty command", "POST", run, "admin", `{"command":""}`, 400, "invalid_command"),
		restCall("timeout 9999h", "POST", run, "admin", `{"command":"uname","timeout":"9999h"}`, 400, "invalid_command"),
		restCall("timeout 1e300 seconds", "POST", run, "admin", `{"command":"uname","timeout":1e300}`, 400, "invalid_json"),
		restCall("negative timeout", "POST", run, "admin", `{"command":"uname","timeout":"-5s"}`, 400, "invalid_command"),
		restCall("queue ttl 9999h", "POST", run, "admin", `{"command":"uname","queue_if_offline":true,"ttl":"9999h"}`, 400, "invalid_command"),
		restCall("1.1 MiB body", "POST", run, "admin", `{"command":"uname","args":["`+strings.Repeat("a", 1100<<10)+`"]}`, 413, "body_too_large"),
		restCall("command to an offline agent", "POST", run, "admin", `{"command":"uname"}`, 409, "client_offline"),
		restCall("batch without selector", "POST", "/api/commands", "admin", `{"command":"uname"}`, 400, "invalid_selector"),
		restCall("enrollment token ttl 99999h", "POST", "/api/enrollment-tokens", "admin", `{"ttl":"99999h"}`, 400, "invalid_token_request"),
		restCall("enrollment token uses -1", "POST", "/api/enrollment-tokens", "admin", `{"uses":-1}`, 400, "invalid_token_request"),
		restCall("operator token role root", "POST", "/api/tokens", "admin", `{"name":"x","role":"root"}`, 400, "invalid_token_request"),
		restCall("operator token 300-byte name", "POST", "/api/tokens", "admin", `{"name":"`+strings.Repeat("n", 300)+`","role":"viewer"}`, 400, "invalid_token_request"),
		restCall("traversal with encoded slashes", "GET", "/api/clients/..%2f..%2fetc%2fpasswd", "admin", "", 404, "not_found"),
		restCall("traversal as one segment", "GET", "/api/commands/%2e%2e", "admin", "", 404, "not_found"),
		restCall("traversal in a delete", "DELETE", "/api/clients/%2e%2e%2fclient-manager.db", "admin", "", 404, "not_found"),
		restCall("8 KiB id", "GET", "/api/clients/"+strings.Repeat("a", 8<<10), "admin", "", 404, "not_found"),
		restCall("unknown client", "POST", "/api/commands/agt_nope", "admin", `{"command":"uname"}`, 404, "unknown_client"),
		restCall("unknown command", "GET", "/api/commands/cmd_nope", "admin", "", 404, "not_found"),
		restCall("cancel an unknown command", "POST", "/api/commands/cmd_nope/cancel", "admin", "", 404, "not_found"),
		restCall("revoke an unknown token", "DELETE", "/api/tokens/opt_nope", "admin", "", 404, "not_found"),
		restCall("limit 100000", "GET", "/api/clients?limit=100000", "admin", "", 400, "invalid_query"),
		restCall("wait forever", "POST", run+"?wait=forever", "admin", `{"command":"uname"}`, 400, "invalid_query"),
		restCall("since yesterday", "GET", "/api/audit?since=yesterday", "admin", "", 400, "invalid_query"),
		restCall("wrong method", "PUT", "/api/clients", "admin", "", 405, "method_not_allowed"),
		restCall("viewer runs a command", "POST", run, "viewer", `{"command":"uname"}`, 403, "forbidden"),
		restCall("viewer reads the audit log", "GET", "/api/audit", "viewer", "", 403, "forbidden"),
		restCall("operator creates an enrollment token", "POST", "/api/enrollment-tokens", "operator", `{"uses":1}`, 403, "forbidden"),
		restCall("operator runs outside its policy", "POST", run, "operator", `{"command":"rm","args":["-rf","/"]}`, 403, "command_not_allowed"),
		restCall("operator revokes an agent", "DELETE", "/api/clients/{agent}?revoke=true", "operator", "", 403, "forbidden"),
		restCall("operator mints an admin token", "POST", "/api/tokens", "operator", `{"name":"x","role":"admin"}`, 403, "forbidden"),
		restCall("no token on loopback once tokens exist", "GET", "/api/clients", "", "", 401, "unauthorized"),
		restCall("garbage token", "GET", "/api/clients", "", "", 401, "unauthorized", "Authorization", "Bearer cmop_garbage"),
		restCall("basic auth", "GET", "/api/clients", "", "", 401, "unauthorized", "Authorization", "Basic YWRtaW46YWRtaW4="),
		restCall("revoked token", "GET", "/api/clients", "revoked", "", 401, "unauthorized"),
		{"rest", "expired token", func(t *testing.T, s *badSuite) {
			time.Sleep(time.Until(s.expiresAt.Add(200 * time.Millisecond)))
			s.expect(t, s.api(t, "GET", "/api/clients", "expiring", ""), 401, "unauthorized")
		}},
		restCall("cross-origin browser POST", "POST", "/api/tokens", "admin", `{"name":"csrf","role":"admin"}`, 403, "origin_not_allowed",
			"Origin", "https://evil.example"),
		{"rest", "replayed enrollment token", func(t *testing.T, s *badSuite) {
			token := s.enrollmentToken(t, 1)
			s.enroll(t, token, "once")
			s.expect(t, send(t, "POST", s.cm+"/api/enroll", strings.NewReader(`{"token":"`+token+`","name":"twice"}`)), 401, "invalid_token")
		}},
		enrollCall("garbage enrollment token", `{"token":"cmet_garbage"}`, 401, "invalid_token"),
		enrollCall("enrollment unknown field", `{"token":"cmet_x","agent_id":"agt_chosen"}`, 400, "invalid_json"),
		enrollCall("enrollment 100 KiB body", `{"token":"`+strings.Repeat("t", 100<<10)+`"}`, 413, "body_too_large"),
		{"rest", "enrollment with GET", func(t *testing.T, s *badSuite) {
			s.expect(t, send(t, "GET", s.cm+"/api/enroll", nil), 405, "method_not_allowed")
		}},
		restCall("batch of 10,001 unknown ids", "POST", "/api/commands", "admin", batchOf(10001), 413, "too_many_targets"),
		restCall("batch with an empty id", "POST", "/api/commands", "admin", `{"client_ids":["{agent}",""],"command":"uname"}`, 400, "invalid_selector"),
		restCall("batch with an empty command", "POST", "/api/commands", "admin", `{"client_ids":["{agent}"],"command":" "}`, 400, "invalid_command"),
		{"rest", "batch naming unknown and revoked agents", checkBatchTargets},
		{"rest", "cross-origin browser enrollment", func(t *testing.T, s *badSuite) {
			token := s.enrollmentToken(t, 1)
			a := send(t, "POST", s.cm+"/api/enroll", strings.NewReader(`{"token":"`+token+`","name":"csrf"}`), "Origin", "https://evil.example")
			s.expect(t, a, 403, "origin_not_allowed")
			s.enroll(t, token, "after-csrf") // the refusal did not spend the token
		}},
		{"rest", "refused command in the audit log", checkRefusedAudit},
		{"rest", "request flood from one token", checkRequestFlood},
		{"rest", "enrollment flood", func(t *testing.T, s *badSuite) {
			for i := range 30 {
				a := send(t, "POST", s.cm+"/api/enroll", strings.NewReader(`{"token":"cmet_flood"}`))
				if a.status == http.StatusTooManyRequests {
					s.expect(t, a, 429, "rate_limited")
					return
				}
				s.expect(t, a, 401, "invalid_token")
				t.Logf("attempt %d refused with 401", i)
			}
			t.Fatal("30 enrollment attempts without 429")
		}},
	}
}

// selectorCases: label selectors beyond the limit (64 entries) on both
// routes that take one.
func selectorCases() []badCase {
	return []badCase{
		restCall("list with a 65-label selector", "GET", "/api/clients?"+labelQuery(maxSelector+1), "admin", "", 400, "selector_too_large"),
		restCall("list with a 1,000-label selector", "GET", "/api/clients?"+labelQuery(1000), "admin", "", 400, "selector_too_large"),
		restCall("batch with a 65-label selector", "POST", "/api/commands", "admin", labelBatch(maxSelector+1), 400, "selector_too_large"),
		restCall("batch with a 1,000-label selector", "POST", "/api/commands", "admin", labelBatch(1000), 400, "selector_too_large"),
	}
}

// checkRequestFlood: 300 concurrent requests with one token exceed its
// burst; the excess gets 429 with Retry-After, and other callers are not
// affected.
func checkRequestFlood(t *testing.T, s *badSuite) {
	var mu sync.Mutex
	counts := map[int]int{}
	retryAfter := ""
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 300 / 8 {
				a := s.api(t, "GET", "/api/clients?limit=1", "flooder", "")
				mu.Lock()
				counts[a.status]++
				if a.status == http.StatusTooManyRequests && a.code == "rate_limited" {
					retryAfter = a.header.Get("Retry-After")
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	t.Logf("flood answers: %v", counts)
	if n, err := strconv.Atoi(retryAfter); counts[429] == 0 || counts[200] < 100 || counts[200]+counts[429] != 296 || err != nil || n < 1 {
		t.Fatalf("flood answers %v, Retry-After %q: want 200 for the burst of 100, then 429 rate_limited with Retry-After", counts, retryAfter)
	}
	s.expect(t, s.api(t, "GET", "/api/clients?limit=1", "viewer", ""), 200, "")
}

// batchOf is a batch body naming n unknown agents.
func batchOf(n int) string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("agt_%024d", i)
	}
	b, _ := json.Marshal(map[string]any{"client_ids": ids, "command": "uname"})
	return string(b)
}

// checkBatchTargets: a batch naming the suite's agent, a revoked one, an
// unknown one and the first again answers 202 with one item per distinct
// id, each unknown or revoked one with its own error code.
func checkBatchTargets(t *testing.T, s *badSuite) {
	revoked, _, _ := strings.Cut(s.revokedCred, ".")
	body := `{"client_ids":["` + s.agentID + `","` + revoked + `","agt_000000000000000000000000","` + s.agentID + `"],"command":"uname"}`
	var got struct {
		Total int
		Items []struct {
			AgentID string `json:"client_id"`
			Command *struct{ ID string }
			Error   *struct{ Code string }
		}
	}
	s.mustJSON(t, s.api(t, "POST", "/api/commands", "admin", body), http.StatusAccepted, &got)
	codes := map[string]string{}
	for _, it := range got.Items {
		switch {
		case it.Error != nil:
			codes[it.AgentID] = it.Error.Code
		case it.Command != nil:
			codes[it.AgentID] = "command"
		}
	}
	want := map[string]string{revoked: "client_revoked", "agt_000000000000000000000000": "unknown_client"}
	if got.Total != 3 || len(got.Items) != 3 || codes[revoked] != want[revoked] ||
		codes["agt_000000000000000000000000"] != "unknown_client" || codes[s.agentID] == "" {
		t.Fatalf("batch answer %+v (%v), want 3 items: %v and the suite's agent", got, codes, want)
	}
}

// checkRefusedAudit: a command the operator's policy refuses is audited
// with its argv, the HTTP status, the role and the caller's address
// without a port; enrollments have the same shape.
func checkRefusedAudit(t *testing.T, s *badSuite) {
	s.expect(t, s.api(t, "POST", "/api/commands/"+s.agentID, "operator", `{"command":"shutdown","args":["-h","now"]}`), 403, "command_not_allowed")
	var audit struct{ Items []map[string]any }
	s.mustJSON(t, s.api(t, "GET", "/api/audit?limit=1000", "admin", ""), http.StatusOK, &audit)
	var refused, enrolled bool
	for _, e := range audit.Items {
		if res, err := strconv.Atoi(fmt.Sprint(e["result"])); err != nil || res < 100 || e["role"] == "" ||
			net.ParseIP(fmt.Sprint(e["source"])) == nil {
			t.Errorf("audit entry %v: want an HTTP status, a role and an IP address without port", e)
		}
		refused = refused || e["detail"] == `"shutdown" "-h" "now"` && e["result"] == "403" && e["role"] == "operator"
		enrolled = enrolled || e["action"] == "agent.enroll" && e["result"] == "201" && e["role"] == "enrollment"
	}
	if !refused || !enrolled {
		t.Fatalf("refused command audited: %v, enrollment audited as 201/enrollment: %v", refused, enrolled)
	}
}

// strictRESTCases are bodies and queries the strict decoding refuses
// (internal/strictjson, internal/api query checks); each also shows that
// nothing of the refused request was acted on.
func strictRESTCases() []badCase {
	const async = "/api/commands/{agent}/async"
	return []badCase{
		refusedCommand("duplicate command key", async, `{"command":"echo","command":"uname","queue_if_offline":true}`),
		refusedCommand("field name in the wrong case", async, `{"Command":"uname","queue_if_offline":true}`),
		refusedCommand("field name with a long s", async, `{"command":"uname","argſ":["-a"],"queue_if_offline":true}`),
		refusedCommand("invalid UTF-8 argument", async, "{\"command\":\"echo\",\"args\":[\"caf\xe9\"],\"queue_if_offline\":true}"),
		refusedCommand("lone surrogate argument", async, `{"command":"echo","args":["\ud800"],"queue_if_offline":true}`),
		refusedCommand("timeout 1e-300 seconds", async, `{"command":"uname","timeout":1e-300,"queue_if_offline":true}`),
		refusedCommand("ttl 0.1ns", async, `{"command":"uname","ttl":"0.1ns","queue_if_offline":true}`),
		refusedCommand("duplicate key in a batch's labels", "/api/commands", `{"labels":{"role":"web","role":"db"},"command":"uname","queue_if_offline":true}`),
		refusedCommand("batch ids in the wrong case", "/api/commands", `{"Client_IDs":["{agent}"],"command":"uname","queue_if_offline":true}`),
		{"rest", "duplicate role key", func(t *testing.T, s *badSuite) {
			a := s.api(t, "POST", "/api/tokens", "admin", `{"name":"dup-role","role":"viewer","role":"admin"}`)
			s.expectMessage(t, a, 400, "invalid_json", `duplicate key "role"`)
			var list struct{ Items []struct{ Name string } }
			s.mustJSON(t, s.api(t, "GET", "/api/tokens", "admin", ""), http.StatusOK, &list)
			for _, it := range list.Items {
				if it.Name == "dup-role" {
					t.Fatal("the refused request created a token")
				}
			}
		}},
		restCall("enrollment token with two uses keys", "POST", "/api/enrollment-tokens", "admin", `{"uses":1,"uses":100000}`, 400, "invalid_json"),
		enrollCall("enrollment with two token keys", `{"token":"cmet_x","token":"cmet_y"}`, 400, "invalid_json"),
		enrollCall("enrollment token key in the wrong case", `{"Token":"cmet_x"}`, 400, "invalid_json"),
		queryCall("unknown command status", "/api/commands?status=bogus", `status "bogus" is not a command status`),
		queryCall("misspelt query parameter", "/api/commands?stauts=failed", `unknown query parameter "stauts"`),
		queryCall("repeated query parameter", "/api/clients?status=online&status=offline", "given more than once"),
		queryCall("include_revoked=yes", "/api/clients?include_revoked=yes", "include_revoked must be true or false"),
		queryCall("query value not UTF-8", "/api/audit?actor=%ff", `query parameter "actor" is not valid UTF-8`),
		queryCall("unknown event type", "/api/events?types=bogus", `types entry "bogus" is not a prefix of any event type`),
		{"rest", "revoke=yes", func(t *testing.T, s *badSuite) {
			a := s.api(t, "DELETE", "/api/clients/"+s.agentID+"?revoke=yes", "admin", "")
			s.expectMessage(t, a, 400, "invalid_query", "revoke must be true or false")
			var agent struct{ Revoked bool }
			if s.mustJSON(t, s.api(t, "GET", "/api/clients/"+s.agentID, "admin", ""), http.StatusOK, &agent); agent.Revoked {
				t.Fatal("the refused request revoked the agent")
			}
		}},
	}
}

// refusedCommand posts a command body as admin, expects 400 invalid_json,
// and checks that the suite's agent got no command from it.
func refusedCommand(name, path, body string) badCase {
	return badCase{"rest", name, func(t *testing.T, s *badSuite) {
		before := s.commandCount(t)
		a := s.api(t, "POST", strings.ReplaceAll(path, "{agent}", s.agentID), "admin", strings.ReplaceAll(body, "{agent}", s.agentID))
		s.expect(t, a, 400, "invalid_json")
		if after := s.commandCount(t); after != before {
			t.Fatalf("the refused request created %d command(s)", after-before)
		}
	}}
}

// queryCall is a GET refused with 400 invalid_query and a message
// containing message.
func queryCall(name, path, message string) badCase {
	return badCase{"rest", name, func(t *testing.T, s *badSuite) {
		s.expectMessage(t, s.api(t, "GET", path, "admin", ""), 400, "invalid_query", message)
	}}
}

// commandCount is how many commands the suite's agent has.
func (s *badSuite) commandCount(t *testing.T) int {
	t.Helper()
	var page struct{ Total int }
	s.mustJSON(t, s.api(t, "GET", "/api/commands?limit=1&client_id="+s.agentID, "admin", ""), http.StatusOK, &page)
	return page.Total
}

// expectMessage is expect, and the error message contains message.
func (s *badSuite) expectMessage(t *testing.T, a answer, status int, code, message string) {
	t.Helper()
	s.expect(t, a, status, code)
	var e struct{ Error struct{ Message string } }
	if err := json.Unmarshal(a.body, &e); err != nil || !strings.Contains(e.Error.Message, message) {
		t.Fatalf("message %q, want it to contain %q", e.Error.Message, message)
	}
}
