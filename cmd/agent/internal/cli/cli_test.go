package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/home-console/client-manager/internal/syncbuf"

	"github.com/home-console/client-manager/cmd/agent/internal/testserver"
	"github.com/home-console/client-manager/pkg/agent"
	"github.com/home-console/client-manager/pkg/agentproto"
)

func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestFlagsOverrideEnvOverrideDefaults(t *testing.T) {
	env := envOf(map[string]string{"AGENT_SERVER": "http://env:1", "AGENT_ALLOW": "uname", "HOME": "/home/u"})
	var stdout, stderr bytes.Buffer
	o, _, done := parseAgentFlags([]string{"--allow", "uptime,df"}, env, &stdout, &stderr)
	if done {
		t.Fatalf("parse ended the command: %s", stderr.String())
	}
	if o.server != "http://env:1" || o.allow != "uptime,df" || o.level != "info" ||
		o.credFile != "/home/u/.local/state/cm-agent/credential.json" || o.journalFile != "" {
		t.Errorf("options %+v", o)
	}
	env = envOf(map[string]string{"AGENT_ENROLL_TOKEN": "from-env", "HOME": "/home/u"})
	if o, _, _ = parseAgentFlags(nil, env, &stdout, &stderr); o.token != "from-env" {
		t.Errorf("AGENT_ENROLL_TOKEN: %q", o.token)
	}
	if o, _, _ = parseAgentFlags([]string{"--enroll-token", "flag"}, env, &stdout, &stderr); o.token != "flag" {
		t.Errorf("--enroll-token over AGENT_ENROLL_TOKEN: %q", o.token)
	}
	env = envOf(map[string]string{"AGENT_JOURNAL_FILE": "/var/j.jsonl", "HOME": "/home/u"})
	if o, _, done = parseAgentFlags(nil, env, &stdout, &stderr); done || o.journalFile != "/var/j.jsonl" {
		t.Errorf("AGENT_JOURNAL_FILE: %q %v", o.journalFile, done)
	}
	if _, code, done := parseAgentFlags([]string{"extra"}, env, &stdout, &stderr); !done || code != ExitUsage {
		t.Errorf("a stray argument: done %v code %d, want %d", done, code, ExitUsage)
	}
	if stdout.Len() != 0 {
		t.Errorf("usage errors wrote to stdout: %q", stdout.String())
	}
}

func TestJournalFileIsPerAgent(t *testing.T) {
	for _, tc := range []struct{ credFile, credential, want string }{
		{"/st/cm-agent/credential.json", "agt_3fA9-x.secret", "/st/cm-agent/journal-agt_3fA9-x.jsonl"},
		{"/st/other.json", "agt_2.secret", "/st/journal-agt_2.jsonl"},
		{"rel/c.json", "ag/x%y.s", "rel/journal-ag_x_y.jsonl"},
	} {
		if got := journalFileFor(tc.credFile, tc.credential); got != tc.want {
			t.Errorf("journalFileFor(%q, %q) = %q, want %q", tc.credFile, tc.credential, got, tc.want)
		}
	}
}

func TestDefaultCredentialFile(t *testing.T) {
	if got := defaultCredentialFile(envOf(map[string]string{"XDG_STATE_HOME": "/st", "HOME": "/h"})); got != "/st/cm-agent/credential.json" {
		t.Errorf("XDG: %s", got)
	}
	if got := defaultCredentialFile(envOf(map[string]string{"XDG_STATE_HOME": "relative", "HOME": "/h"})); got != "/h/.local/state/cm-agent/credential.json" {
		t.Errorf("relative XDG_STATE_HOME must be ignored: %s", got)
	}
}

func TestParseLabelsAndToken(t *testing.T) {
	l, err := parseLabels(" env=prod, role = web ,empty=")
	if err != nil || len(l) != 3 || l["env"] != "prod" || l["role"] != "web" || l["empty"] != "" {
		t.Errorf("labels %v %v", l, err)
	}
	for _, bad := range []string{"novalue", "=x"} {
		if _, err := parseLabels(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	path := filepath.Join(t.TempDir(), "bootstrap-token")
	os.WriteFile(path, []byte("  tok123\n"), 0o600)
	if tok, err := readToken("@" + path); err != nil || tok != "tok123" {
		t.Errorf("token file: %q %v", tok, err)
	}
	if tok, _ := readToken("plain"); tok != "plain" {
		t.Errorf("plain token: %q", tok)
	}
	if _, err := readToken("@" + path + ".missing"); err == nil {
		t.Error("missing token file accepted")
	}
}

// syncBuffer captures output written from several goroutines.
type syncBuffer = syncbuf.Buffer

func startMain(t *testing.T, args []string, env map[string]string) (context.CancelFunc, <-chan int, *syncBuffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stderr := &syncBuffer{}
	code := make(chan int, 1)
	go func() { code <- Main(ctx, args, envOf(env), &bytes.Buffer{}, stderr) }()
	t.Cleanup(cancel)
	return cancel, code, stderr
}

func waitCode(t *testing.T, code <-chan int, stderr *syncBuffer) int {
	t.Helper()
	select {
	case c := <-code:
		return c
	case <-time.After(15 * time.Second):
		t.Fatalf("Main did not return; stderr:\n%s", stderr)
		return -1
	}
}

func TestMainEnrollsRunsCommandsAndHandlesRevocation(t *testing.T) {
	srv := testserver.New(t)
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "bootstrap-token")
	os.WriteFile(tokenFile, []byte(srv.Token+"\n"), 0o600)
	credFile := filepath.Join(dir, "state", "credential.json")
	env := map[string]string{"AGENT_SERVER": srv.URL, "AGENT_ENROLL_TOKEN": "@" + tokenFile}
	args := []string{"--credential-file", credFile, "--labels", "env=test", "--log-level", "debug"}

	cancel, code, stderr := startMain(t, args, env)
	srv.WaitConnected(t, 1, 10*time.Second)
	if fi, err := os.Stat(credFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("credential file: %v %v", fi, err)
	}
	if err := srv.Send("ag1", agentproto.TypeCommandRequest, agentproto.CommandRequest{CommandID: "c1", Command: "uname", TimeoutMS: 5000}); err != nil {
		t.Fatal(err)
	}
	if res := <-srv.Results(); res.Status != agentproto.ResultCompleted || res.Stdout == "" {
		t.Errorf("uname result %+v", res)
	}
	cancel()
	if c := waitCode(t, code, stderr); c != ExitOK {
		t.Fatalf("exit %d after cancel, want 0; stderr:\n%s", c, stderr)
	}
	if fi, err := os.Stat(filepath.Join(dir, "state", "journal-ag1.jsonl")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("journal-<agent id>.jsonl next to the credential: %v %v", fi, err)
	}

	_, code, stderr = startMain(t, args, env)
	srv.WaitConnected(t, 1, 10*time.Second)
	if n := srv.Enrolled(); n != 1 {
		t.Errorf("enrolled %d times; the stored credential must be reused", n)
	}
	srv.Revoke("ag1")
	if c := waitCode(t, code, stderr); c != ExitCredential || !strings.Contains(stderr.String(), credFile) {
		t.Errorf("exit %d after revocation, want %d naming the credential file; stderr:\n%s", c, ExitCredential, stderr)
	}
}

func TestMainWithoutCredentialOrToken(t *testing.T) {
	srv := testserver.New(t)
	credFile := filepath.Join(t.TempDir(), "credential.json")
	_, code, stderr := startMain(t, []string{"--server", srv.URL, "--credential-file", credFile}, nil)
	if c := waitCode(t, code, stderr); c != ExitError || !strings.Contains(stderr.String(), "--enroll-token") {
		t.Errorf("exit %d, stderr:\n%s", c, stderr)
	}
	_, code, stderr = startMain(t, []string{"--server", srv.URL, "--credential-file", credFile, "--enroll-token", "wrong"}, nil)
	if c := waitCode(t, code, stderr); c != ExitCredential || !strings.Contains(stderr.String(), "invalid_token") {
		t.Errorf("bad token: exit %d, stderr:\n%s", c, stderr)
	}
	if _, err := agent.LoadCredential(credFile); err == nil {
		t.Error("a credential was stored after a refused enrollment")
	}
}

func TestMainUsageErrors(t *testing.T) {
	for _, args := range [][]string{{"--log-level", "loud"}, {"--labels", "x"}, {"--nope"}, {"simulate", "--count", "0"}} {
		_, code, stderr := startMain(t, args, nil)
		if c := waitCode(t, code, stderr); c != ExitUsage {
			t.Errorf("%v: exit %d, want %d", args, c, ExitUsage)
		}
	}
}

func TestSessionFlags(t *testing.T) {
	var stdout, stderr bytes.Buffer
	env := envOf(map[string]string{"HOME": "/h", "SHELL": "/bin/zsh", "AGENT_ALLOW_TERMINAL": "true",
		"AGENT_FILES_ROOT": "/srv/a:/srv/b", "AGENT_TERMINAL_IDLE_TIMEOUT": "2m", "AGENT_FILES_MAX_SIZE": "1000"})
	o, _, done := parseAgentFlags(nil, env, &stdout, &stderr)
	if done || !o.allowTerminal || o.terminalShell != "/bin/zsh" || o.terminalIdle != 2*time.Minute ||
		o.terminalMax != 4 || o.filesMaxSize != 1000 || o.filesMaxTransfers != 4 ||
		strings.Join(o.filesRoots, ",") != "/srv/a,/srv/b" {
		t.Errorf("from the environment: %+v (%s)", o, stderr.String())
	}
	o, _, done = parseAgentFlags([]string{"--files-root", "/x", "--files-root", "/y", "--allow-terminal=false",
		"--terminal-shell", "/bin/sh", "--terminal-max-sessions", "2"}, env, &stdout, &stderr)
	if done || o.allowTerminal || o.terminalShell != "/bin/sh" || o.terminalMax != 2 || strings.Join(o.filesRoots, ",") != "/x,/y" {
		t.Errorf("flags over the environment: %+v", o)
	}
	if o, _, _ = parseAgentFlags(nil, envOf(map[string]string{"HOME": "/h", "SHELL": "zsh"}), &stdout, &stderr); o.terminalShell != "/bin/sh" || o.allowTerminal || o.filesRoots != nil {
		t.Errorf("defaults: %+v", o)
	}
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{nil, map[string]string{"AGENT_ALLOW_TERMINAL": "maybe"}, `AGENT_ALLOW_TERMINAL="maybe"`},
		{nil, map[string]string{"AGENT_TERMINAL_MAX_SESSIONS": "x"}, `AGENT_TERMINAL_MAX_SESSIONS="x"`},
		{[]string{"--terminal-idle-timeout", "0s"}, nil, "--terminal-idle-timeout must be positive"},
		{[]string{"--files-max-size", "-1"}, nil, "--files-max-size must be positive"},
		{[]string{"--files-max-transfers", "0"}, nil, "--files-max-transfers must be positive"},
	} {
		stderr.Reset()
		_, code, done := parseAgentFlags(tc.args, envOf(tc.env), &stdout, &stderr)
		if !done || code != ExitUsage || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("%v %v: done %v code %d, stderr %q; want %q", tc.args, tc.env, done, code, stderr.String(), tc.want)
		}
	}
}

func TestTerminalStateFileBesideTheJournal(t *testing.T) {
	o := agentOptions{credFile: "/st/credential.json", terminalShell: "/bin/sh", allowTerminal: true, filesRoots: []string{"/srv"}}
	cfg := agentConfig(o, agent.StoredCredential{Credential: "agt_7.secret"}, agentproto.Hello{}, nil, nil)
	if cfg.TerminalStatePath != "/st/terminals-agt_7.json" || !cfg.Terminal.Enabled || cfg.Files.Roots[0] != "/srv" {
		t.Errorf("config %+v", cfg)
	}
}
