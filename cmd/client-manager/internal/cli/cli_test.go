package cli

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/home-console/client-manager/internal/access"
	"github.com/home-console/client-manager/internal/cmdflags"
	"github.com/home-console/client-manager/internal/cmservice"
	"github.com/home-console/client-manager/internal/dirlock"
	"github.com/home-console/client-manager/internal/enroll"
)

// emptyDir makes an empty directory the working directory and returns it.
func emptyDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	t.Chdir(dir)
	return dir
}

// run calls Main and checks its exit code and outputs: each want is a
// part of the output, nil means the output must be empty.
func run(t *testing.T, args []string, code int, stdout, stderr []string) {
	t.Helper()
	var out, errOut strings.Builder
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if got := Main(ctx, args, &out, &errOut); got != code {
		t.Errorf("%q: exit code %d, want %d; stderr %q", args, got, code, errOut.String())
	}
	for name, c := range map[string]struct {
		got  string
		want []string
	}{"stdout": {out.String(), stdout}, "stderr": {errOut.String(), stderr}} {
		if c.want == nil && c.got != "" {
			t.Errorf("%q: %s = %q, want it empty", args, name, c.got)
		}
		for _, w := range c.want {
			if !strings.Contains(c.got, w) {
				t.Errorf("%q: %s = %q, want it to contain %q", args, name, c.got, w)
			}
		}
	}
}

func TestMainCommandLine(t *testing.T) {
	usage := "Usage:\n  client-manager [flags]"
	tokenUsage := "client-manager token revoke ID"
	tests := []struct {
		args           []string
		env            map[string]string
		code           int
		stdout, stderr []string
	}{
		{[]string{"-h"}, nil, cmdflags.ExitOK, []string{usage, "client-manager token", "CLIENT_MANAGER_PORT=10000", "CLIENT_MANAGER_BOOTSTRAP_TTL=24h", "CLIENT_MANAGER_TLS_CERT (unset)"}, nil},
		{[]string{"--help"}, nil, cmdflags.ExitOK, []string{usage}, nil},
		{[]string{"--version"}, nil, cmdflags.ExitOK, []string{"client-manager ", "commit "}, nil},
		{[]string{"--bogus"}, nil, cmdflags.ExitUsage, nil, []string{"not defined: -bogus", usage}},
		{[]string{"serve"}, nil, cmdflags.ExitUsage, nil, []string{`unexpected argument "serve"`, usage}},
		{[]string{"token", "--help"}, nil, cmdflags.ExitOK, []string{tokenUsage}, nil},
		{[]string{"token", "-h"}, nil, cmdflags.ExitOK, []string{tokenUsage}, nil},
		{[]string{"token", "create", "--help"}, nil, cmdflags.ExitOK, []string{"-role string", "-ttl duration"}, nil},
		{[]string{"token", "list", "--help"}, nil, cmdflags.ExitOK, []string{tokenUsage}, nil},
		{[]string{"token"}, nil, cmdflags.ExitUsage, nil, []string{"missing argument", tokenUsage}},
		{[]string{"token", "--bogus"}, nil, cmdflags.ExitUsage, nil, []string{"not defined: -bogus", tokenUsage}},
		{[]string{"token", "mint"}, nil, cmdflags.ExitUsage, nil, []string{`unknown subcommand "mint"`, tokenUsage}},
		{[]string{"token", "create", "--name", "me", "--role", "god"}, nil, cmdflags.ExitUsage, nil, []string{"--role"}},
		{[]string{"token", "create", "--role", "admin"}, nil, cmdflags.ExitUsage, nil, []string{"--name is required"}},
		{[]string{"token", "create", "--name", "me", "--role", "admin", "extra"}, nil, cmdflags.ExitUsage, nil, []string{`unexpected argument "extra"`}},
		{[]string{"token", "list", "extra"}, nil, cmdflags.ExitUsage, nil, []string{`unexpected argument "extra"`}},
		{[]string{"token", "revoke"}, nil, cmdflags.ExitUsage, nil, []string{"missing argument"}},
		{nil, map[string]string{"CLIENT_MANAGER_PORT": "x"}, cmdflags.ExitUsage, nil, []string{"client-manager: configuration:", "CLIENT_MANAGER_PORT"}},
		{nil, map[string]string{"CLIENT_MANAGER_LOG_FORMAT": "xml"}, cmdflags.ExitUsage, nil, []string{"log format"}},
		{nil, map[string]string{"CLIENT_MANAGER_TLS_CERT": "c.pem"}, cmdflags.ExitUsage, nil, []string{"go together"}},
		{[]string{"token", "list"}, map[string]string{"CLIENT_MANAGER_DRAIN_TIMEOUT": "soon"}, cmdflags.ExitUsage, nil, []string{"configuration"}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.args, tt.env), func(t *testing.T) {
			dir := emptyDir(t)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			run(t, tt.args, tt.code, tt.stdout, tt.stderr)
			if entries, _ := os.ReadDir(dir); len(entries) > 0 {
				t.Errorf("the command wrote %v into the working directory", entries)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		change func(*config)
		want   string // "" for valid, else a part of the error
	}{
		{func(*config) {}, ""},
		{func(c *config) { c.TLSCert, c.TLSKey = "c.pem", "k.pem" }, ""},
		{func(c *config) { c.TLSCert = "c.pem" }, "go together"},
		{func(c *config) { c.TLSKey = "k.pem" }, "go together"},
		{func(c *config) { c.APIRate = 0 }, "API_RATE"},
		{func(c *config) { c.APIBurst = 0 }, "API_BURST"},
		{func(c *config) { c.AllowedOrigins = []string{"https://a.example.com", "*.b.example.com"} }, ""},
		{func(c *config) { c.AllowedOrigins = []string{"[x"} }, "ALLOWED_ORIGINS"},
		{func(c *config) { c.TerminalRole, c.FilesRole = "operator", "viewer" }, ""},
		{func(c *config) { c.TerminalRole = "root" }, "TERMINAL_ROLE"},
		{func(c *config) { c.FilesRole = "" }, "FILES_ROLE"},
		{func(c *config) { c.RecordingRetention = 0 }, "RECORDING_RETENTION"},
		{func(c *config) { c.TerminalTicketTTL = -time.Second }, "TERMINAL_TICKET_TTL"},
		{func(c *config) { c.RecordingMaxBytes = 100 }, "RECORDING_MAX_BYTES"},
		{func(c *config) { c.RecordingsMaxTotalBytes = c.RecordingMaxBytes - 1 }, "RECORDINGS_MAX_TOTAL_BYTES"},
		{func(c *config) { c.FilesMaxBytes = 0 }, "FILES_MAX_BYTES"},
		{func(c *config) { c.FilesMaxPerAgent = 0 }, "FILES_MAX_PER_AGENT"},
	}
	for i, tt := range tests {
		cfg := defaults()
		tt.change(&cfg)
		err := cfg.validate()
		if (err == nil) != (tt.want == "") || err != nil && !strings.Contains(err.Error(), tt.want) {
			t.Errorf("case %d: validate() = %v, want %q", i, err, tt.want)
		}
	}
}

func TestServiceConfigKeepsTheDefaultsNotExposed(t *testing.T) {
	cfg := defaults()
	cfg.MessageRate, cfg.EnrollRate = 7, 30
	s := cfg.service()
	d := cmservice.DefaultConfig()
	if s.Hub.MessageRate != 7 || s.Hub.MessageBurst != d.Hub.MessageBurst || s.Enroll.AttemptsPerMinute != 30 ||
		s.Enroll.AttemptBurst != 0 || s.Dispatch.MaxTTL != d.Dispatch.MaxTTL {
		t.Fatalf("service config %+v", s)
	}
	cfg.TerminalRole, cfg.RecordInput, cfg.FilesMaxPerAgent = "operator", true, 9
	if s := cfg.service().Sessions; s.TerminalRole != access.RoleOperator || s.FilesRole != access.RoleAdmin ||
		!s.Config.RecordInput || s.Config.FilesMaxPerAgent != 9 || s.Config.TicketTTL != 30*time.Second {
		t.Fatalf("sessions config %+v", s)
	}
}

// lockDataDir holds the data directory's lock as a running service would.
func lockDataDir(t *testing.T) string {
	t.Helper()
	data := t.TempDir()
	t.Setenv("CLIENT_MANAGER_DATA_DIR", data)
	held, err := dirlock.AcquireDir(data, LockFile)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = held.Release() })
	return data
}

func TestMainRefusesADataDirInUse(t *testing.T) {
	emptyDir(t)
	data := lockDataDir(t)
	t.Setenv("CLIENT_MANAGER_HOST", "127.0.0.1")
	t.Setenv("CLIENT_MANAGER_PORT", "0")
	run(t, nil, cmdflags.ExitError, nil, []string{"data directory " + data + " is in use", "pid " + strconv.Itoa(os.Getpid())})
	for _, f := range []string{cmservice.StoreFile, enroll.BootstrapFile} {
		if _, err := os.Stat(filepath.Join(data, f)); err == nil {
			t.Errorf("the refused client manager created %s", f)
		}
	}
}

func TestTokenWorksBesideARunningService(t *testing.T) {
	emptyDir(t)
	lockDataDir(t)
	var out, errOut strings.Builder
	if code := Main(context.Background(), []string{"token", "create", "--name", "ci", "--role", "viewer"}, &out, &errOut); code != 0 ||
		!strings.HasPrefix(out.String(), "cmop_") {
		t.Fatalf("token create: %d %q %q", code, out.String(), errOut.String())
	}
	run(t, []string{"token", "list"}, cmdflags.ExitOK, []string{`"name": "ci"`, `"role": "viewer"`}, nil)
}

func TestMainServesStandaloneUntilTheContextEnds(t *testing.T) {
	emptyDir(t)
	data := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close()
	t.Setenv("CLIENT_MANAGER_DATA_DIR", data)
	t.Setenv("CLIENT_MANAGER_HOST", "127.0.0.1")
	t.Setenv("CLIENT_MANAGER_PORT", strconv.Itoa(port))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut strings.Builder
	done := make(chan int, 1)
	go func() { done <- Main(ctx, nil, &out, &errOut) }()
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if res, err := http.Get("http://127.0.0.1:" + strconv.Itoa(port) + "/health"); err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("never healthy; exit %d", <-done)
		}
	}
	cancel()
	select {
	case code := <-done:
		if code != cmdflags.ExitOK || out.String() != "" {
			t.Fatalf("exit code %d, stdout %q, stderr %q", code, out.String(), errOut.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Main did not return after its context ended")
	}
	if _, err := dirlock.AcquireDir(data, LockFile); err != nil {
		t.Fatalf("the lock outlived Main: %v", err)
	}
}

func TestErrorsNameTheProgramOnce(t *testing.T) {
	emptyDir(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	t.Setenv("CLIENT_MANAGER_DATA_DIR", t.TempDir())
	t.Setenv("CLIENT_MANAGER_HOST", "127.0.0.1")
	t.Setenv("CLIENT_MANAGER_PORT", strconv.Itoa(busy.Addr().(*net.TCPAddr).Port))
	t.Setenv("CLIENT_MANAGER_LOG_LEVEL", "error")
	var out, errOut strings.Builder
	if code := Main(context.Background(), nil, &out, &errOut); code != cmdflags.ExitError {
		t.Fatalf("exit code %d, want %d", code, cmdflags.ExitError)
	}
	last := strings.TrimSpace(errOut.String())
	last = last[strings.LastIndexByte(last, '\n')+1:]
	if !strings.HasPrefix(last, "client-manager: listen on 127.0.0.1:") || strings.Contains(last, "client manager:") {
		t.Fatalf("error line %q: want one program name, then the cause", last)
	}
}
