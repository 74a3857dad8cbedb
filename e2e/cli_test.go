package e2e

import (
	"bufio"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// ran is the outcome of a command run to its end.
type ran struct {
	code           int
	stdout, stderr string
}

// runIn runs a built binary with args in dir, with the test's environment
// without RUNTIME_* and CLIENT_MANAGER_* variables plus env, and waits at
// most 10s for it to end (a command that started its service would not).
func runIn(t *testing.T, dir, binary string, args []string, env ...string) ran {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(bin, binary), args...)
	cmd.Dir = dir
	cmd.Env = append(baseEnv(), env...)
	var stdout, stderr syncBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("%s %q still running after 10s; stderr:\n%s", binary, args, stderr.String())
	}
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("%s %q: %v", binary, args, err)
	}
	return ran{code: cmd.ProcessState.ExitCode(), stdout: stdout.String(), stderr: stderr.String()}
}

func TestCommandLines(t *testing.T) {
	t.Parallel()
	const cmUsage, tokenUsage = "Usage:\n  client-manager [flags]", "client-manager token revoke ID"
	tests := []struct {
		binary         string
		args           []string
		code           int
		stdout, stderr string // a part of each output; "" means the output is empty
	}{
		{"runtime", []string{"-h"}, 0, "RUNTIME_STATE_DIR=state", ""},
		{"runtime", []string{"--help"}, 0, "Usage: runtime", ""},
		{"runtime", []string{"--version"}, 0, "runtime ", ""},
		{"runtime", []string{"--port", "1"}, 2, "", "flag provided but not defined: -port"},
		{"runtime", []string{"serve"}, 2, "", `unexpected argument "serve"`},
		{"client-manager", []string{"-h"}, 0, "CLIENT_MANAGER_DATA_DIR=data", ""},
		{"client-manager", []string{"--help"}, 0, cmUsage, ""},
		{"client-manager", []string{"--version"}, 0, "client-manager ", ""},
		{"client-manager", []string{"--data", "x"}, 2, "", "flag provided but not defined: -data"},
		{"client-manager", []string{"serve"}, 2, "", `unexpected argument "serve"`},
		{"client-manager", []string{"token", "--help"}, 0, tokenUsage, ""},
		{"client-manager", []string{"token", "create", "--help"}, 0, "-role string", ""},
		{"client-manager", []string{"token", "revoke", "--help"}, 0, tokenUsage, ""},
		{"client-manager", []string{"token"}, 2, "", "missing argument"},
		{"client-manager", []string{"token", "--bogus"}, 2, "", "not defined: -bogus"},
		{"client-manager", []string{"token", "mint"}, 2, "", `unknown subcommand "mint"`},
		{"client-manager", []string{"token", "create", "--name", "x", "--role", "god"}, 2, "", `unknown role "god"`},
		{"client-manager", []string{"token", "revoke", "a", "b"}, 2, "", `unexpected argument "b"`},
	}
	version := regexp.MustCompile(`^(runtime|client-manager) \S+ \(commit \S+, go[0-9.]+\S*\)\n$`)
	for _, tt := range tests {
		dir := t.TempDir()
		r := runIn(t, dir, tt.binary, tt.args)
		name := tt.binary + " " + strings.Join(tt.args, " ")
		if r.code != tt.code {
			t.Errorf("%s: exit code %d, want %d; stderr %q", name, r.code, tt.code, r.stderr)
		}
		for _, o := range []struct{ what, got, want string }{{"stdout", r.stdout, tt.stdout}, {"stderr", r.stderr, tt.stderr}} {
			if o.want == "" && o.got != "" || !strings.Contains(o.got, o.want) {
				t.Errorf("%s: %s %q, want it to contain %q", name, o.what, o.got, o.want)
			}
		}
		if tt.code == 2 && !strings.Contains(r.stderr, "Usage") {
			t.Errorf("%s: no usage on stderr: %q", name, r.stderr)
		}
		if tt.args[0] == "--version" && !version.MatchString(r.stdout) {
			t.Errorf("%s: %q is not \"<program> <version> (commit <commit>, <go version>)\"", name, r.stdout)
		}
		if entries, _ := os.ReadDir(dir); len(entries) > 0 {
			t.Errorf("%s wrote %v into its working directory", name, entries)
		}
	}
}

// helpDefaults returns the environment variables and their defaults as
// "binary --help" prints them ("" for none).
func helpDefaults(t *testing.T, binary string) map[string]string {
	t.Helper()
	r := runIn(t, t.TempDir(), binary, []string{"--help"})
	vars := map[string]string{}
	line := regexp.MustCompile(`^  ([A-Z][A-Z0-9_]+)(?:=(\S*)| \(unset\))$`)
	sc := bufio.NewScanner(strings.NewReader(r.stdout))
	for sc.Scan() {
		if m := line.FindStringSubmatch(sc.Text()); m != nil {
			vars[m[1]] = m[2]
		}
	}
	if len(vars) == 0 {
		t.Fatalf("%s --help lists no environment variables:\n%s", binary, r.stdout)
	}
	return vars
}

// readmeDefaults returns the variables of the README's configuration table
// under heading, with their defaults: a row names one or more variables in
// backticks, then as many defaults in backticks, or "—" for none.
func readmeDefaults(t *testing.T, heading string) map[string]string {
	t.Helper()
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "\n"+heading+"\n")
	if !ok {
		t.Fatalf("README has no %q", heading)
	}
	section, _, _ = strings.Cut(section, "\n#")
	tick := regexp.MustCompile("`([^`]*)`")
	vars := map[string]string{}
	for _, row := range strings.Split(section, "\n") {
		cells := strings.Split(row, " | ")
		if !strings.HasPrefix(row, "| `") || len(cells) < 3 {
			continue
		}
		names, defs := tick.FindAllStringSubmatch(cells[0], -1), tick.FindAllStringSubmatch(cells[1], -1)
		if strings.TrimSpace(cells[1]) == "—" {
			defs = make([][]string, len(names))
			for i := range defs {
				defs[i] = []string{"", ""}
			}
		}
		if len(defs) != len(names) {
			t.Errorf("README row %q: %d variables, %d defaults", row, len(names), len(defs))
			continue
		}
		for i, n := range names {
			vars[n[1]] = defs[i][1]
		}
	}
	return vars
}

func TestReadmeConfigurationMatchesDefaults(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ binary, heading string }{
		{"runtime", "### Runtime"},
		{"client-manager", "### Client manager"},
	} {
		help, readme := helpDefaults(t, tc.binary), readmeDefaults(t, tc.heading)
		for k, v := range help {
			if got, ok := readme[k]; !ok {
				t.Errorf("README %q does not list %s (default %q)", tc.heading, k, v)
			} else if got != v {
				t.Errorf("README %q: %s defaults to %q, the binary to %q", tc.heading, k, got, v)
			}
		}
		for k := range readme {
			if _, ok := help[k]; !ok {
				t.Errorf("README %q lists %s, which %s does not read", tc.heading, k, tc.binary)
			}
		}
	}
}
