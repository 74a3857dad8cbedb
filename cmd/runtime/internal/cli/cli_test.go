package cli

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/home-console/client-manager/internal/cmdflags"
	"github.com/home-console/client-manager/internal/dirlock"
	"github.com/home-console/client-manager/internal/runtimehost"
)

// emptyDir makes an empty directory the working directory and returns it.
func emptyDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	t.Chdir(dir)
	return dir
}

// assertEmpty fails if dir holds anything.
func assertEmpty(t *testing.T, dir string) {
	t.Helper()
	if entries, _ := os.ReadDir(dir); len(entries) > 0 {
		t.Errorf("the command wrote %v into the working directory", entries)
	}
}

func TestMainCommandLine(t *testing.T) {
	tests := []struct {
		args           []string
		env            map[string]string
		code           int
		stdout, stderr []string // parts of each output; nil: it must be empty
	}{
		{[]string{"-h"}, nil, cmdflags.ExitOK, []string{"Usage: runtime", "RUNTIME_PLUGINS_DIR=plugins", "RUNTIME_SHUTDOWN_TIMEOUT=30s", "SIGUSR2"}, nil},
		{[]string{"--help"}, nil, cmdflags.ExitOK, []string{"Usage: runtime", "RUNTIME_ADMIN_TOKEN (unset)"}, nil},
		{[]string{"--version"}, nil, cmdflags.ExitOK, []string{"runtime ", "commit "}, nil},
		{[]string{"--bogus"}, nil, cmdflags.ExitUsage, nil, []string{"not defined: -bogus", "Usage: runtime"}},
		{[]string{"start"}, nil, cmdflags.ExitUsage, nil, []string{`unexpected argument "start"`, "Usage: runtime"}},
		{nil, map[string]string{"RUNTIME_PORT": "x"}, cmdflags.ExitUsage, nil, []string{"runtime: configuration:", "RUNTIME_PORT"}},
		{nil, map[string]string{"RUNTIME_LOG_LEVEL": "loud"}, cmdflags.ExitUsage, nil, []string{"log level"}},
		{nil, map[string]string{"RUNTIME_HOST": "0.0.0.0"}, cmdflags.ExitUsage, nil, []string{"not a loopback address"}},
		{nil, map[string]string{"RUNTIME_SHUTDOWN_TIMEOUT": "0s"}, cmdflags.ExitUsage, nil, []string{"RUNTIME_SHUTDOWN_TIMEOUT"}},
		{nil, map[string]string{"RUNTIME_ALLOWED_HOSTS": "ok.example,[a-"}, cmdflags.ExitUsage, nil, []string{"RUNTIME_ALLOWED_HOSTS", `"[a-"`}},
		{nil, map[string]string{"RUNTIME_ALLOWED_HOSTS": "http://x.example"}, cmdflags.ExitUsage, nil, []string{"RUNTIME_ALLOWED_HOSTS"}},
		{nil, map[string]string{"RUNTIME_ALLOWED_ORIGINS": "[a-"}, cmdflags.ExitUsage, nil, []string{"RUNTIME_ALLOWED_ORIGINS"}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.args, tt.env), func(t *testing.T) {
			dir := emptyDir(t)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			var stdout, stderr strings.Builder
			if code := Main(context.Background(), tt.args, &stdout, &stderr); code != tt.code {
				t.Errorf("exit code %d, want %d; stderr %q", code, tt.code, stderr.String())
			}
			for name, c := range map[string]struct {
				got  string
				want []string
			}{"stdout": {stdout.String(), tt.stdout}, "stderr": {stderr.String(), tt.stderr}} {
				if c.want == nil && c.got != "" {
					t.Errorf("%s = %q, want it empty", name, c.got)
				}
				for _, w := range c.want {
					if !strings.Contains(c.got, w) {
						t.Errorf("%s = %q, want it to contain %q", name, c.got, w)
					}
				}
			}
			assertEmpty(t, dir)
		})
	}
}

func TestMainRefusesAStateDirInUse(t *testing.T) {
	state := t.TempDir()
	t.Setenv("RUNTIME_STATE_DIR", state)
	t.Setenv("RUNTIME_PLUGINS_DIR", t.TempDir())
	t.Setenv("RUNTIME_PORT", "0")
	held, err := dirlock.Acquire(filepath.Join(state, runtimehost.LockFile))
	if err != nil {
		t.Fatal(err)
	}
	defer held.Release()
	var stdout, stderr strings.Builder
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	code := Main(ctx, nil, &stdout, &stderr)
	if want := fmt.Sprintf("pid %d", os.Getpid()); code != cmdflags.ExitError || !strings.Contains(stderr.String(), want) {
		t.Fatalf("exit code %d, stderr %q; want %d naming %q", code, stderr.String(), cmdflags.ExitError, want)
	}
	if strings.Count(stderr.String(), "runtime:") != 1 {
		t.Errorf("the program name is repeated: %q", stderr.String())
	}
	if _, err := os.Stat(filepath.Join(state, runtimehost.AddrFile)); err == nil {
		t.Error("the refused runtime wrote its address file")
	}
}

func TestMainRunsUntilTheContextEnds(t *testing.T) {
	state := t.TempDir()
	t.Setenv("RUNTIME_STATE_DIR", state)
	t.Setenv("RUNTIME_PLUGINS_DIR", t.TempDir())
	t.Setenv("RUNTIME_PORT", "0")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr strings.Builder
	done := make(chan int, 1)
	go func() { done <- Main(ctx, nil, &stdout, &stderr) }()
	addr := filepath.Join(state, runtimehost.AddrFile)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(addr); err == nil {
			break
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("no address file; exit %d", <-done)
		}
	}
	cancel()
	select {
	case code := <-done:
		if code != cmdflags.ExitOK || stdout.String() != "" {
			t.Fatalf("exit code %d, stdout %q", code, stdout.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Main did not return after its context ended")
	}
}
