package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// badCase is one bad input: check sends it and asserts the exact answer
// (HTTP status and error code, or WebSocket close code); the suite then
// asserts both services are still healthy.
type badCase struct {
	area, name string
	check      func(t *testing.T, s *badSuite)
}

// TestBadInput sends every bad input of the suite to the real binaries:
// a runtime with RUNTIME_ADMIN_TOKEN set, launching the client manager on
// a free port, next to defective plugin manifests.
func TestBadInput(t *testing.T) {
	t.Parallel()
	s := newBadSuite(t)
	var cases []badCase
	for _, group := range [][]badCase{adminCases(), manifestCases(), strictRESTCases(), restCases(), selectorCases(), wsCases(), strictWSCases()} {
		cases = append(cases, group...)
	}
	seen := map[string]bool{}
	for _, c := range cases {
		if seen[c.area+"/"+c.name] {
			t.Fatalf("case %s/%s listed twice", c.area, c.name)
		}
		seen[c.area+"/"+c.name] = true
	}
	if len(cases) < 40 {
		t.Fatalf("%d bad inputs, want at least 40", len(cases))
	}
	t.Logf("bad_inputs=%d", len(cases))
	for _, c := range cases {
		t.Run(c.area+"/"+c.name, func(t *testing.T) {
			c.check(t, s)
			s.healthy(t)
		})
	}
}

// badSuite is the running system the cases attack.
type badSuite struct {
	r          *runtimeProc
	adminToken string // RUNTIME_ADMIN_TOKEN
	cm         string // client manager base URL
	dataDir    string
	// tokens are operator tokens by role or purpose: admin, operator,
	// viewer, flooder, expiring (1s TTL), revoked.
	tokens    map[string]string
	expiresAt time.Time
	// agentID and credential belong to an enrolled agent the WebSocket
	// cases connect as; revokedCred to a revoked one.
	agentID, credential, revokedCred string
}

const badAdminToken = "rt-admin-e2e-badinput-secret"

func newBadSuite(t *testing.T) *badSuite {
	t.Helper()
	port := freePort(t)
	s := &badSuite{adminToken: badAdminToken, cm: "http://127.0.0.1:" + itoa(port), dataDir: t.TempDir(), tokens: map[string]string{}}
	s.r = startRuntime(t, defectivePlugins(t),
		"RUNTIME_ADMIN_TOKEN="+s.adminToken, "CLIENT_MANAGER_PORT="+itoa(port), "CLIENT_MANAGER_DATA_DIR="+s.dataDir,
		"CLIENT_MANAGER_HELLO_TIMEOUT=1s", "CLIENT_MANAGER_MAX_MESSAGE_BYTES=65536", "CLIENT_MANAGER_OPERATOR_COMMANDS=uname")
	s.waitPlugin(t, cm, "running", 20*time.Second)

	s.tokens["admin"] = s.createToken(t, "", `{"name":"admin","role":"admin"}`)
	for _, role := range []string{"operator", "viewer"} {
		s.tokens[role] = s.createToken(t, s.tokens["admin"], `{"name":"`+role+`","role":"`+role+`"}`)
	}
	s.tokens["flooder"] = s.createToken(t, s.tokens["admin"], `{"name":"flooder","role":"viewer"}`)
	s.tokens["expiring"] = s.createToken(t, s.tokens["admin"], `{"name":"expiring","role":"viewer","ttl":"1s"}`)
	s.expiresAt = time.Now().Add(time.Second)
	s.tokens["revoked"] = s.createToken(t, s.tokens["admin"], `{"name":"revoked","role":"admin"}`)
	var list struct{ Items []struct{ ID, Name string } }
	s.mustJSON(t, s.api(t, "GET", "/api/tokens", "admin", ""), http.StatusOK, &list)
	for _, it := range list.Items {
		if it.Name == "revoked" {
			s.expect(t, s.api(t, "DELETE", "/api/tokens/"+it.ID, "admin", ""), http.StatusNoContent, "")
		}
	}

	enrollToken := s.enrollmentToken(t, 2)
	s.agentID, s.credential = s.enroll(t, enrollToken, "raw")
	revokedID, revokedCred := s.enroll(t, enrollToken, "revoked")
	s.revokedCred = revokedCred
	s.expect(t, s.api(t, "DELETE", "/api/clients/"+revokedID+"?revoke=true", "admin", ""), http.StatusOK, "")
	return s
}

// defectivePlugins lays out the client manager next to one defective
// manifest per manifest case (directory name = plugin name).
func defectivePlugins(t *testing.T) string {
	t.Helper()
	flakyBin := filepath.Join(bin, "flaky")
	ok := func(name, extra string) string {
		return `{"name":"` + name + `","version":"1.0.0","command":"` + flakyBin + `"` + extra + `}`
	}
	dir := plugins(t, map[string]string{
		"client_manager":   clientManager(),
		"m_malformed":      `{"name":"m_malformed","version":"1.0.0",`,
		"m_unknown_field":  ok("m_unknown_field", `,"shell":"sh -c"`),
		"m_wrong_type":     `{"name":"m_wrong_type","version":1,"command":"` + flakyBin + `"}`,
		"m_dup_key":        `{"name":"m_dup_key","version":"1.0.0","command":"` + flakyBin + `","command":"/bin/sh"}`,
		"m_wrong_case":     ok("m_wrong_case", `,"Enabled":false`),
		"m_bad_utf8":       ok("m_bad_utf8", ",\"description\":\"caf\xe9\""),
		"m_bad_semver":     `{"name":"m_bad_semver","version":"1.2","command":"` + flakyBin + `"}`,
		"m_no_command":     `{"name":"m_no_command","version":"1.0.0"}`,
		"m_not_executable": `{"name":"m_not_executable","version":"1.0.0","command":"data.txt"}`,
		"m_missing_binary": `{"name":"m_missing_binary","version":"1.0.0","command":"./nope"}`,
		"m_dup_a":          ok("m_dup", ""),
		"m_dup_b":          ok("m_dup", ""),
		"m_cycle_a":        ok("m_cycle_a", `,"dependencies":["m_cycle_b"]`),
		"m_cycle_b":        ok("m_cycle_b", `,"dependencies":["m_cycle_a"]`),
		"m_missing_dep":    ok("m_missing_dep", `,"dependencies":["m_ghost"]`),
		"m_blocked":        ok("m_blocked", `,"dependencies":["m_malformed"]`),
		"m_disabled":       ok("m_disabled", `,"enabled":false`),
		"m_huge_restarts":  ok("m_huge_restarts", `,"restart":{"max_restarts":99999999999999999999}`),
		"m_huge_timeout":   ok("m_huge_timeout", `,"stop_timeout":"9999999999h"`),
		"m_bad_name":       ok("M Bad/../Name", ""),
		"m_trailing":       ok("m_trailing", "") + ` {"name":"x"}`,
		"m_bad_sha":        ok("m_bad_sha", `,"sha256":"not-hex"`),
		"m_huge_args":      ok("m_huge_args", `,"args":["`+strings.Repeat("a", 1<<20)+`"],"restart":{"policy":"sometimes"}`),
	})
	if err := os.WriteFile(filepath.Join(dir, "m_not_executable", "data.txt"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// answer is an HTTP response as the cases check it.
type answer struct {
	status int
	code   string // error.code of a JSON error body
	header http.Header
	body   []byte
}

// send makes one request; headers are name, value pairs ("Host" sets the
// Host the request addresses).
func send(t *testing.T, method, url string, body io.Reader, headers ...string) answer {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i] == "Host" {
			req.Host = headers[i+1]
			continue
		}
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := httpc.Do(req)
	if err != nil {
		t.Fatalf("%s %.200s: %v", method, url, err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	var e struct{ Error struct{ Code string } }
	_ = json.Unmarshal(raw, &e)
	return answer{status: res.StatusCode, code: e.Error.Code, header: res.Header, body: raw}
}

// api calls the client manager's REST API as the operator token named by
// who ("" sends no token).
func (s *badSuite) api(t *testing.T, method, path, who, body string, headers ...string) answer {
	t.Helper()
	if who != "" {
		headers = append(headers, "Authorization", "Bearer "+s.tokens[who])
	}
	return send(t, method, s.cm+path, strings.NewReader(body), append(headers, "Content-Type", "application/json")...)
}

// admin calls the runtime's admin API with the admin token.
func (s *badSuite) admin(t *testing.T, method, path string) answer {
	t.Helper()
	return send(t, method, s.r.admin+path, nil, "Authorization", "Bearer "+s.adminToken)
}

// expect fails t unless a has the status and error code.
func (s *badSuite) expect(t *testing.T, a answer, status int, code string) {
	t.Helper()
	if a.status != status || a.code != code {
		t.Fatalf("got %d %q (%.300s), want %d %q", a.status, a.code, a.body, status, code)
	}
}

func (s *badSuite) mustJSON(t *testing.T, a answer, status int, out any) {
	t.Helper()
	if a.status != status {
		t.Fatalf("got %d %.300s, want %d", a.status, a.body, status)
	}
	if err := json.Unmarshal(a.body, out); err != nil {
		t.Fatalf("%s: %v", a.body, err)
	}
}

// healthy asserts that the client manager and the runtime still answer
// their health checks, and the client manager still runs.
func (s *badSuite) healthy(t *testing.T) {
	t.Helper()
	if code, body := get(s.cm + "/health"); code != http.StatusOK {
		t.Fatalf("client manager unhealthy after the bad input: %d %s", code, body)
	}
	if code, body := get(s.r.admin + "/api/admin/v1/health"); code != http.StatusOK {
		t.Fatalf("runtime unhealthy after the bad input: %d %s", code, body)
	}
	if p := s.plugin(t, cm); p.State != "running" {
		t.Fatalf("client manager is %s after the bad input", p.State)
	}
}

func (s *badSuite) plugin(t *testing.T, name string) pluginJSON {
	t.Helper()
	var p pluginJSON
	s.mustJSON(t, s.admin(t, "GET", "/api/admin/v1/plugins/"+name), http.StatusOK, &p)
	s.r.remember(p.PID)
	return p
}

func (s *badSuite) waitPlugin(t *testing.T, name, state string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for p := s.plugin(t, name); p.State != state; p = s.plugin(t, name) {
		if time.Now().After(deadline) {
			t.Fatalf("plugin %s is %s (%s), want %s", name, p.State, p.Reason, state)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// createToken creates an operator token as the admin token auth ("" for
// the loopback exemption) and returns it.
func (s *badSuite) createToken(t *testing.T, auth, body string) string {
	t.Helper()
	var headers []string
	if auth != "" {
		headers = []string{"Authorization", "Bearer " + auth}
	}
	var out struct{ Token string }
	s.mustJSON(t, send(t, "POST", s.cm+"/api/tokens", strings.NewReader(body), headers...), http.StatusCreated, &out)
	return out.Token
}

// enrollmentToken creates an enrollment token good for uses enrollments.
func (s *badSuite) enrollmentToken(t *testing.T, uses int) string {
	t.Helper()
	var out struct{ Token string }
	s.mustJSON(t, s.api(t, "POST", "/api/enrollment-tokens", "admin", `{"name":"e2e","uses":`+itoa(uses)+`}`), http.StatusCreated, &out)
	return out.Token
}

// enroll enrolls an agent and returns its id and credential.
func (s *badSuite) enroll(t *testing.T, token, name string) (string, string) {
	t.Helper()
	var out struct {
		AgentID    string `json:"agent_id"`
		Credential string `json:"credential"`
	}
	a := send(t, "POST", s.cm+"/api/enroll", strings.NewReader(`{"token":"`+token+`","name":"`+name+`"}`))
	if a.status != http.StatusCreated || json.Unmarshal(a.body, &out) != nil {
		t.Fatalf("enroll %s = %d %s", name, a.status, a.body)
	}
	return out.AgentID, out.Credential
}
