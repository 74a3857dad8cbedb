package e2e

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/home-console/client-manager/pkg/agentproto"
)

// TestNoSecretsInLogs runs the runtime, the client manager and two
// bin/agent processes at debug level with all their stderr captured, goes
// through every path that handles a secret (token creation over REST and
// the CLI, enrollment with the bootstrap and a created token, commands,
// revocations, wrong tokens) and then looks for each secret in every log
// line and in the audit log.
func TestNoSecretsInLogs(t *testing.T) {
	t.Parallel()
	port := freePort(t)
	s := &badSuite{adminToken: "rt-admin-" + randomHex(t), cm: "http://127.0.0.1:" + itoa(port), dataDir: t.TempDir(), tokens: map[string]string{}}
	s.r = startRuntime(t, plugins(t, map[string]string{"client_manager": clientManager()}),
		"RUNTIME_ADMIN_TOKEN="+s.adminToken, "RUNTIME_LOG_LEVEL=debug", "CLIENT_MANAGER_LOG_LEVEL=debug",
		"CLIENT_MANAGER_PORT="+itoa(port), "CLIENT_MANAGER_DATA_DIR="+s.dataDir)
	s.waitPlugin(t, cm, "running", 20*time.Second)
	secrets := map[string]string{"RUNTIME_ADMIN_TOKEN": s.adminToken}

	s.tokens["admin"] = s.createToken(t, "", `{"name":"admin","role":"admin"}`)
	s.tokens["operator"] = s.createToken(t, s.tokens["admin"], `{"name":"operator","role":"operator"}`)
	cliLogs, cliToken := cliCreateToken(t, s.dataDir)
	enrollToken := s.enrollmentToken(t, 1)
	bootstrap, err := os.ReadFile(filepath.Join(s.dataDir, "bootstrap-token"))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{"admin operator token": s.tokens["admin"], "operator token": s.tokens["operator"],
		"CLI operator token": cliToken, "created enrollment token": enrollToken, "bootstrap token": strings.TrimSpace(string(bootstrap))} {
		secrets[k] = v
	}

	tokenFile := filepath.Join(t.TempDir(), "enroll-token")
	if err := os.WriteFile(tokenFile, []byte(enrollToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	creds := []string{filepath.Join(t.TempDir(), "a.json"), filepath.Join(t.TempDir(), "b.json")}
	logs := map[string]*syncBuffer{"runtime (with the client manager)": s.r.logs, "token CLI": cliLogs}
	agents := []*exec.Cmd{}
	for i, from := range []string{filepath.Join(s.dataDir, "bootstrap-token"), tokenFile} {
		cmd, l := startSecretAgent(t, s.cm, from, creds[i])
		agents = append(agents, cmd)
		logs["agent "+itoa(i)] = l
	}
	ids := waitOnlineAs(t, s, 2)
	exerciseSecrets(t, s, ids, secrets)
	for i, path := range creds {
		id, cred := readCredential(t, path)
		_, secret, _ := agentproto.ParseCredential(cred)
		secrets["agent credential "+id] = cred
		secrets["agent secret "+itoa(i)] = secret
	}

	audit := s.api(t, "GET", "/api/audit?limit=1000", "admin", "")
	if audit.status != http.StatusOK || !strings.Contains(string(audit.body), `"action":"DELETE /api/tokens/:id"`) {
		t.Fatalf("audit = %d %.500s", audit.status, audit.body)
	}
	for _, a := range agents {
		_ = a.Process.Signal(syscall.SIGTERM)
		_ = a.Wait()
	}
	_ = s.r.cmd.Process.Signal(syscall.SIGTERM)
	<-s.r.done

	if !strings.Contains(s.r.logs.String(), "agent connected") || !strings.Contains(logs["agent 1"].String(), "agent starting") {
		t.Fatal("the captured logs lack the expected lines; nothing was checked")
	}
	texts := map[string]string{"audit log": string(audit.body)}
	for where, buf := range logs {
		texts[where] = buf.String()
	}
	findSecrets(t, texts, secrets)
}

// findSecrets fails t for every line of texts (name -> text) holding one
// of secrets (what -> value).
func findSecrets(t *testing.T, texts, secrets map[string]string) {
	t.Helper()
	lines := 0
	for where, text := range texts {
		for i, line := range strings.Split(text, "\n") {
			lines++
			for what, secret := range secrets {
				if len(secret) < 8 {
					t.Fatalf("secret %s is too short to search for: %q", what, secret)
				}
				if strings.Contains(line, secret) {
					t.Errorf("%s line %d holds the %s: %.300s", where, i+1, what, line)
				}
			}
		}
	}
	t.Logf("searched %d secrets in %d lines of %d logs", len(secrets), lines, len(texts))
}

// exerciseSecrets runs a command, uses wrong and revoked secrets and
// revokes an agent; wrong secrets it presents are added to secrets.
func exerciseSecrets(t *testing.T, s *badSuite, ids []string, secrets map[string]string) {
	t.Helper()
	run := s.api(t, "POST", "/api/commands/"+ids[0], "operator", `{"command":"uname","args":["-a"]}`)
	if run.status != http.StatusOK || !strings.Contains(string(run.body), `"status":"completed"`) {
		t.Fatalf("uname = %d %s", run.status, run.body)
	}
	wrong := "cmop_" + randomHex(t)
	secrets["wrong operator token"] = wrong
	s.expect(t, send(t, "GET", s.cm+"/api/clients", nil, "Authorization", "Bearer "+wrong), 401, "unauthorized")
	wrongAdmin := "rt-wrong-" + randomHex(t)
	secrets["wrong admin token"] = wrongAdmin
	s.expect(t, send(t, "GET", s.r.admin+"/api/admin/v1/plugins", nil, "Authorization", "Bearer "+wrongAdmin), 401, "unauthorized")
	wrongEnroll := "cmet_" + randomHex(t)
	secrets["wrong enrollment token"] = wrongEnroll
	s.expect(t, send(t, "POST", s.cm+"/api/enroll", strings.NewReader(`{"token":"`+wrongEnroll+`"}`)), 401, "invalid_token")
	wrongSecret := randomHex(t)
	secrets["wrong agent secret"] = wrongSecret
	if _, resp, err := s.dial(ctxFor(t, 5*time.Second), ids[0]+"."+wrongSecret, true); err == nil || resp == nil || resp.StatusCode != 401 {
		t.Fatalf("wrong agent secret: %v %v", resp, err)
	}

	var list struct {
		Items []struct {
			ID   string `json:"id"`
			Name string `json:"name"`
		} `json:"items"`
	}
	s.mustJSON(t, s.api(t, "GET", "/api/tokens", "admin", ""), http.StatusOK, &list)
	for _, it := range list.Items {
		if it.Name == "operator" {
			s.expect(t, s.api(t, "DELETE", "/api/tokens/"+it.ID, "admin", ""), http.StatusNoContent, "")
		}
	}
	s.expect(t, s.api(t, "GET", "/api/clients", "operator", ""), 401, "unauthorized")
	s.expect(t, s.api(t, "DELETE", "/api/clients/"+ids[1]+"?revoke=true", "admin", ""), http.StatusOK, "")
}

// cliCreateToken runs "client-manager token create" on dataDir and
// returns its stderr and the token it printed.
func cliCreateToken(t *testing.T, dataDir string) (*syncBuffer, string) {
	t.Helper()
	cmd := exec.Command(filepath.Join(bin, "client-manager"), "token", "create", "--name", "cli", "--role", "admin")
	cmd.Env = append(baseEnv(), "CLIENT_MANAGER_DATA_DIR="+dataDir, "CLIENT_MANAGER_LOG_LEVEL=debug")
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("token create: %v\n%s", err, stderr)
	}
	return stderr, strings.TrimSpace(string(out))
}

// startSecretAgent runs bin/agent at debug level, enrolling with the token
// in tokenFile, and returns it with its captured stderr.
func startSecretAgent(t *testing.T, server, tokenFile, credFile string) (*exec.Cmd, *syncBuffer) {
	t.Helper()
	return startAgentBinary(t, "--server", server, "--enroll-token", "@"+tokenFile,
		"--credential-file", credFile, "--allow", "uname", "--log-level", "debug")
}

// waitOnlineAs waits until n agents are online (listed with the admin
// token) and returns their ids.
func waitOnlineAs(t *testing.T, s *badSuite, n int) []string {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		var l clientList
		a := s.api(t, "GET", "/api/clients?status=online", "admin", "")
		if a.status == http.StatusOK && json.Unmarshal(a.body, &l) == nil && l.Total == n {
			ids := make([]string, n)
			for i, it := range l.Items {
				ids[i] = it.ID
			}
			return ids
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d agents online, want %d: %s", l.Total, n, a.body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func readCredential(t *testing.T, path string) (id, credential string) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		AgentID    string `json:"agent_id"`
		Credential string `json:"credential"`
	}
	if err := json.Unmarshal(raw, &c); err != nil || c.Credential == "" {
		t.Fatalf("credential file %s: %v %s", path, err, raw)
	}
	return c.AgentID, c.Credential
}

func randomHex(t *testing.T) string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
