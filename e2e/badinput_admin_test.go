package e2e

import (
	"encoding/base64"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// adminCall is a runtime admin API case: auth is the Authorization header
// ("" none; "$" is replaced by the admin token).
func adminCall(name, method, path, auth string, status int, code string) badCase {
	return badCase{"admin", name, func(t *testing.T, s *badSuite) {
		var headers []string
		if auth != "" {
			headers = []string{"Authorization", strings.ReplaceAll(auth, "$", s.adminToken)}
		}
		a := send(t, method, s.r.admin+"/api/admin/v1"+path, nil, headers...)
		s.expect(t, a, status, code)
		if a.header.Get("X-Content-Type-Options") != "nosniff" || a.header.Get("Cache-Control") != "no-store" {
			t.Fatalf("admin API answer lacks the security headers: %v", a.header)
		}
	}}
}

// adminAct is an admin API case with the admin token, a body and extra
// headers (name, value pairs; "Host" sets the addressed host), after
// which the client manager must run as the same process.
func adminAct(name, method, path, body string, status int, code string, headers ...string) badCase {
	return badCase{"admin", name, func(t *testing.T, s *badSuite) {
		before := s.plugin(t, cm)
		headers := append([]string{"Authorization", "Bearer " + s.adminToken}, headers...)
		s.expect(t, send(t, method, s.r.admin+"/api/admin/v1"+path, strings.NewReader(body), headers...), status, code)
		if after := s.plugin(t, cm); after.PID != before.PID {
			t.Fatalf("the refused request was carried out: client manager pid %d, was %d", after.PID, before.PID)
		}
	}}
}

// halfSentAction is a restart whose body stops short of its
// Content-Length: 400 incomplete_body, and the restart does not happen.
func halfSentAction() badCase {
	return badCase{"admin", "action body cut short", func(t *testing.T, s *badSuite) {
		before := s.plugin(t, cm)
		conn := halfSent(t, s.r, "client_manager", "Authorization: Bearer "+s.adminToken)
		_ = conn.(*net.TCPConn).CloseWrite()
		if got := statusLine(conn, 5*time.Second); got != "HTTP/1.1 400 Bad Request" {
			t.Fatalf("got %q, want 400", got)
		}
		time.Sleep(200 * time.Millisecond)
		if after := s.plugin(t, cm); after.PID != before.PID || after.State != "running" {
			t.Fatalf("the restart was carried out: client manager %s pid %d, was %d", after.State, after.PID, before.PID)
		}
	}}
}

func adminCases() []badCase {
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("admin:"+badAdminToken))
	return []badCase{
		adminCall("missing token", "GET", "/plugins", "", 401, "unauthorized"),
		adminCall("wrong token", "GET", "/plugins", "Bearer wrong-token", 401, "unauthorized"),
		adminCall("token without scheme", "GET", "/plugins", "$", 401, "unauthorized"),
		adminCall("basic auth", "GET", "/plugins", basic, 401, "unauthorized"),
		adminCall("token with a space inside", "GET", "/plugins", "Bearer "+badAdminToken[:8]+" "+badAdminToken[8:], 401, "unauthorized"),
		adminCall("token prefix only", "POST", "/plugins/client_manager/stop", "Bearer "+badAdminToken[:8], 401, "unauthorized"),
		adminCall("unknown plugin", "GET", "/plugins/nope", "Bearer $", 404, "unknown_plugin"),
		adminCall("start unknown plugin", "POST", "/plugins/nope/start", "Bearer $", 404, "unknown_plugin"),
		adminCall("traversal with encoded slashes", "GET", "/plugins/..%2f..%2fetc%2fpasswd", "Bearer $", 404, "not_found"),
		adminCall("traversal as one segment", "GET", "/plugins/%2e%2e", "Bearer $", 404, "unknown_plugin"),
		adminCall("traversal in an action", "POST", "/plugins/..%2fclient_manager/stop", "Bearer $", 404, "not_found"),
		adminCall("NUL in name", "GET", "/plugins/client_manager%00", "Bearer $", 404, "unknown_plugin"),
		adminCall("8 KiB name", "GET", "/plugins/"+strings.Repeat("a", 8<<10), "Bearer $", 404, "unknown_plugin"),
		adminCall("delete a plugin", "DELETE", "/plugins/client_manager", "Bearer $", 405, "method_not_allowed"),
		adminCall("GET an action", "GET", "/plugins/client_manager/stop", "Bearer $", 405, "method_not_allowed"),
		adminCall("POST the list", "POST", "/plugins", "Bearer $", 405, "method_not_allowed"),
		adminCall("unknown action", "POST", "/plugins/client_manager/explode", "Bearer $", 404, "not_found"),
		adminCall("start a running plugin", "POST", "/plugins/client_manager/start", "Bearer $", 409, "invalid_transition"),
		adminCall("stop an invalid plugin", "POST", "/plugins/m_malformed/stop", "Bearer $", 409, "invalid_transition"),
		adminCall("start an invalid plugin", "POST", "/plugins/m_unknown_field/start", "Bearer $", 409, "invalid_transition"),
		adminCall("restart an invalid plugin", "POST", "/plugins/m_cycle_a/restart", "Bearer $", 409, "invalid_transition"),
		adminCall("start a blocked plugin", "POST", "/plugins/m_blocked/start", "Bearer $", 409, "invalid_transition"),
		adminCall("start a disabled plugin", "POST", "/plugins/m_disabled/start", "Bearer $", 409, "invalid_transition"),
		adminAct("foreign Host", "GET", "/plugins", "", 421, "misdirected_request", "Host", "evil.example"),
		adminAct("foreign Host on an action", "POST", "/plugins/client_manager/restart", "", 421, "misdirected_request",
			"Host", "rebound.evil.example:8000"),
		adminAct("foreign Origin on an action", "POST", "/plugins/client_manager/restart", "", 403, "origin_not_allowed",
			"Origin", "http://evil.example", "Content-Type", "text/plain"),
		adminAct("action with parameters", "POST", "/plugins/client_manager/restart", `{"force":true}`, 400, "invalid_json"),
		adminAct("65 KiB action body", "POST", "/plugins/client_manager/restart", strings.Repeat(" ", 65<<10), 413, "body_too_large"),
		halfSentAction(),
		{"admin", "2 MiB request line", func(t *testing.T, s *badSuite) {
			a := send(t, "GET", s.r.admin+"/api/admin/v1/plugins/"+strings.Repeat("a", 2<<20), nil, "Authorization", "Bearer "+s.adminToken)
			if a.status != http.StatusRequestHeaderFieldsTooLarge {
				t.Fatalf("got %d, want 431", a.status)
			}
		}},
	}
}

// manifestCase checks the state and reason the admin API shows for the
// plugin of a defective manifest.
func manifestCase(name, plugin, state, reason string) badCase {
	return badCase{"manifest", name, func(t *testing.T, s *badSuite) {
		p := s.plugin(t, plugin)
		if p.State != state || !strings.Contains(p.Reason, reason) || p.PID != 0 {
			t.Fatalf("%s is %s (pid %d) %q, want %s %q", plugin, p.State, p.PID, p.Reason, state, reason)
		}
	}}
}

func manifestCases() []badCase {
	return []badCase{
		manifestCase("malformed JSON", "m_malformed", "invalid", "invalid JSON: unexpected end of file"),
		manifestCase("unknown field", "m_unknown_field", "invalid", `unknown field "shell"`),
		manifestCase("wrong type", "m_wrong_type", "invalid", "field version: expected a string, got a number (line 1, column 34)"),
		manifestCase("duplicate command key", "m_dup_key", "invalid", `duplicate key "command"`),
		manifestCase("field name in the wrong case", "m_wrong_case", "invalid", `unknown field "Enabled": field names are case-sensitive (did you mean "enabled"?)`),
		manifestCase("invalid UTF-8", "m_bad_utf8", "invalid", "invalid UTF-8 at byte offset"),
		manifestCase("bad semver", "m_bad_semver", "invalid", "not a semantic version"),
		manifestCase("missing command", "m_no_command", "invalid", "command: required"),
		manifestCase("non-executable command", "m_not_executable", "invalid", "is not executable"),
		manifestCase("missing binary", "m_missing_binary", "invalid", "does not exist"),
		manifestCase("duplicate name", "m_dup_b", "invalid", `duplicate plugin name "m_dup"`),
		manifestCase("dependency cycle", "m_cycle_a", "invalid", "dependency cycle: m_cycle_a -> m_cycle_b -> m_cycle_a"),
		manifestCase("missing dependency", "m_missing_dep", "blocked", "depends on unknown plugin m_ghost"),
		manifestCase("dependency on an invalid plugin", "m_blocked", "blocked", "depends on invalid plugin m_malformed"),
		manifestCase("disabled", "m_disabled", "disabled", "enabled: false"),
		manifestCase("huge max_restarts", "m_huge_restarts", "invalid", "field restart.max_restarts: number 99999999999999999999 is out of range"),
		manifestCase("huge stop_timeout", "m_huge_timeout", "invalid", `stop_timeout "9999999999h": not a duration`),
		manifestCase("bad name", "m_bad_name", "invalid", "must match"),
		manifestCase("trailing data", "m_trailing", "invalid", "unexpected data after the manifest object"),
		manifestCase("bad sha256", "m_bad_sha", "invalid", "sha256: want 64 hex digits"),
		manifestCase("1 MiB argument and bad policy", "m_huge_args", "invalid", `restart.policy "sometimes"`),
	}
}
