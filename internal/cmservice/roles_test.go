package cmservice

import (
	"net/http"
	"testing"

	"github.com/home-console/client-manager/pkg/pluginproto"
)

// createToken creates an operator token as the loopback admin (or with
// the given admin token) and returns it with its id.
func createToken(t *testing.T, base, role, auth string) (string, string) {
	t.Helper()
	var headers []string
	if auth != "" {
		headers = []string{"Authorization", "Bearer " + auth}
	}
	code, body := call(t, "POST", base+"/api/tokens", `{"name":"`+role+`-tok","role":"`+role+`"}`, headers...)
	if code != http.StatusCreated {
		t.Fatalf("create %s token = %d %v", role, code, body)
	}
	rec := body["operator_token"].(map[string]any)
	return body["token"].(string), rec["id"].(string)
}

func TestRolesAndTokens(t *testing.T) {
	svc, base := startService(t, Config{OperatorCommands: []string{"uname"}})
	e := startAgent(t, svc, base, "uname", "head")
	admin, _ := createToken(t, base, "admin", "")
	operator, _ := createToken(t, base, "operator", admin)
	viewer, viewerID := createToken(t, base, "viewer", admin)
	run := "/api/commands/" + e.agentID
	tests := []struct {
		name, method, path, body, token string
		status                          int
		code                            string
	}{
		{"loopback needs a token once one exists", "GET", "/api/clients", "", "", 401, "unauthorized"},
		{"viewer reads clients", "GET", "/api/clients", "", viewer, 200, ""},
		{"viewer cannot run commands", "POST", run, `{"command":"uname"}`, viewer, 403, "forbidden"},
		{"viewer cannot read the audit log", "GET", "/api/audit", "", viewer, 403, "forbidden"},
		{"operator runs a policy command", "POST", run, `{"command":"uname"}`, operator, 200, ""},
		{"operator outside policy", "POST", run, `{"command":"head","args":["/etc/passwd"]}`, operator, 403, "command_not_allowed"},
		{"operator cannot enroll", "POST", "/api/enrollment-tokens", `{"uses":1}`, operator, 403, "forbidden"},
		{"operator cannot revoke", "DELETE", "/api/clients/" + e.agentID + "?revoke=true", "", operator, 403, "forbidden"},
		{"operator cannot mint tokens", "POST", "/api/tokens", `{"name":"x","role":"admin"}`, operator, 403, "forbidden"},
		{"admin runs anything the agent allows", "POST", run, `{"command":"head","args":["-c","4","/dev/zero"]}`, admin, 200, ""},
		{"admin creates enrollment tokens", "POST", "/api/enrollment-tokens", `{"uses":1}`, admin, 201, ""},
		{"bad role", "POST", "/api/tokens", `{"name":"x","role":"root"}`, admin, 400, "invalid_token_request"},
		{"garbage token", "GET", "/api/clients", "", "cmop_garbage", 401, "unauthorized"},
		{"metrics need a viewer", "GET", "/metrics", "", "", 401, "unauthorized"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var headers []string
			if tt.token != "" {
				headers = []string{"Authorization", "Bearer " + tt.token}
			}
			code, body := call(t, tt.method, base+tt.path, tt.body, headers...)
			if code != tt.status || errCode(body) != tt.code {
				t.Fatalf("= %d %v, want %d %q", code, body, tt.status, tt.code)
			}
		})
	}

	if code, _ := call(t, "DELETE", base+"/api/tokens/"+viewerID, "", "Authorization", "Bearer "+admin); code != http.StatusNoContent {
		t.Fatalf("revoke viewer token = %d", code)
	}
	if code, _ := call(t, "GET", base+"/api/clients", "", "Authorization", "Bearer "+viewer); code != 401 {
		t.Fatalf("revoked token still works: %d", code)
	}

	code, audit := call(t, "GET", base+"/api/audit?limit=100", "", "Authorization", "Bearer "+admin)
	if code != 200 {
		t.Fatalf("audit = %d %v", code, audit)
	}
	var sawDenied, sawRun bool
	for _, it := range audit["items"].([]any) {
		m := it.(map[string]any)
		if m["actor"] == "operator-tok" && m["result"] == "403" && m["role"] == "operator" {
			sawDenied = true
		}
		if m["actor"] == "operator-tok" && m["result"] == "200" && m["detail"] == `"uname"` && m["source"] == "127.0.0.1" {
			sawRun = true
		}
	}
	if !sawDenied || !sawRun {
		t.Fatalf("audit lacks operator entries (denied %v, run %v): %v", sawDenied, sawRun, audit["items"])
	}
}

func TestRemoteCallersNeedATokenEvenThroughTheProxy(t *testing.T) {
	svc, base := startService(t, Config{ProxyToken: "proxy-secret"})
	_ = svc
	remote := []string{pluginproto.HeaderProxyToken, "proxy-secret", pluginproto.HeaderForwardedFor, "192.0.2.44"}
	if code, body := call(t, "GET", base+"/api/clients", "", remote...); code != 401 || errCode(body) != "unauthorized" {
		t.Fatalf("remote caller via proxy = %d %v, want 401", code, body)
	}
	viaProxyLoopback := []string{pluginproto.HeaderProxyToken, "proxy-secret", pluginproto.HeaderForwardedFor, "127.0.0.1"}
	if code, _ := call(t, "GET", base+"/api/clients", "", viaProxyLoopback...); code != 200 {
		t.Fatalf("loopback caller via proxy = %d, want 200", code)
	}
	forged := []string{pluginproto.HeaderProxyToken, "guess", pluginproto.HeaderForwardedFor, "192.0.2.44"}
	if code, _ := call(t, "GET", base+"/api/clients", "", forged...); code != 200 {
		t.Fatalf("forged proxy headers from loopback = %d, want 200 (treated as the loopback peer)", code)
	}
}
