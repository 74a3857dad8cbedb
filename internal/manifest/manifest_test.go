package manifest

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// plugin is one plugin directory to lay out for a test.
type plugin struct {
	dir      string
	manifest string
	noBinary bool
	mode     os.FileMode // of the binary; 0o755 if zero
}

// layout writes plugins into a fresh plugins directory. Each gets an
// executable "bin" next to its manifest.
func layout(t *testing.T, plugins ...plugin) string {
	t.Helper()
	root := t.TempDir()
	for _, p := range plugins {
		dir := filepath.Join(root, p.dir)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, FileName), []byte(p.manifest), 0o644); err != nil {
			t.Fatal(err)
		}
		if p.noBinary {
			continue
		}
		mode := p.mode
		if mode == 0 {
			mode = 0o755
		}
		if err := os.WriteFile(filepath.Join(dir, "bin"), []byte("#!/bin/sh\n"), mode); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// ok returns a valid manifest for name with the given dependencies and
// extra fields (a JSON fragment starting with a comma, or "").
func ok(name string, deps []string, extra string) string {
	quoted := make([]string, len(deps))
	for i, d := range deps {
		quoted[i] = `"` + d + `"`
	}
	return `{"name":"` + name + `","version":"1.0.0","command":"bin","dependencies":[` +
		strings.Join(quoted, ",") + `]` + extra + `}`
}

func TestDiscoverValid(t *testing.T) {
	sum := sha256.Sum256([]byte("#!/bin/sh\n"))
	root := layout(t,
		plugin{dir: "a", manifest: ok("a", []string{"b"}, `,"restart":{"policy":"on-failure","max_restarts":0}`)},
		plugin{dir: "b", manifest: ok("b", nil, `,"sha256":"`+strings.ToUpper(hex.EncodeToString(sum[:]))+`","mount":"/b"`)},
		plugin{dir: "c", manifest: ok("c", []string{"a", "b"}, `,"enabled":false,"stop_timeout":"3s","start_timeout":"1500ms","env":{"K":"v"}`)},
		plugin{dir: "empty-dir-is-ignored", manifest: "", noBinary: true},
	)
	if err := os.Remove(filepath.Join(root, "empty-dir-is-ignored", FileName)); err != nil {
		t.Fatal(err)
	}
	set, err := Discover(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(set.Entries) != 3 {
		t.Fatalf("got %d entries, want 3", len(set.Entries))
	}
	want := map[string]Status{"a": StatusOK, "b": StatusOK, "c": StatusDisabled}
	for _, e := range set.Entries {
		if e.Status != want[e.Name] {
			t.Errorf("%s: status %s (%s), want %s", e.Name, e.Status, e.Reason, want[e.Name])
		}
	}
	if got := set.StartOrder(); !slices.Equal(got, []string{"b", "a", "c"}) {
		t.Errorf("start order %v, want [b a c]", got)
	}
	a, _ := set.Lookup("a")
	if a.Manifest.Restart != (Restart{PolicyOnFailure, DefaultInitialBackoff, DefaultMaxBackoff, 0, DefaultWindow}) {
		t.Errorf("a restart = %+v", a.Manifest.Restart)
	}
	if a.Manifest.StopTimeout != DefaultStopTimeout || a.Manifest.StartTimeout != DefaultStartTimeout || !a.Manifest.Enabled {
		t.Errorf("a defaults: stop_timeout %s start_timeout %s enabled %v", a.Manifest.StopTimeout, a.Manifest.StartTimeout, a.Manifest.Enabled)
	}
	if a.Manifest.Command != filepath.Join(root, "a", "bin") {
		t.Errorf("a command %q", a.Manifest.Command)
	}
	b, _ := set.Lookup("b")
	if b.Manifest.SHA256 != hex.EncodeToString(sum[:]) || b.Manifest.Mount != "/b" {
		t.Errorf("b sha256 %q mount %q", b.Manifest.SHA256, b.Manifest.Mount)
	}
	c, _ := set.Lookup("c")
	if c.Manifest.StopTimeout != 3*time.Second || c.Manifest.StartTimeout != 1500*time.Millisecond || c.Manifest.Env["K"] != "v" {
		t.Errorf("c stop_timeout %s start_timeout %s env %v", c.Manifest.StopTimeout, c.Manifest.StartTimeout, c.Manifest.Env)
	}
}

func TestDiscoverMissingDirectory(t *testing.T) {
	if _, err := Discover(filepath.Join(t.TempDir(), "nope")); err == nil {
		t.Fatal("want an error for a missing plugins directory")
	}
}

// defect is a plugins directory with one or more broken plugins; every
// plugin named in want must end in that status with a reason containing
// the substring, and "good" (always added) must stay runnable.
type defect struct {
	name    string
	plugins []plugin
	want    map[string]want
}

type want struct {
	status Status
	reason string
}

func TestDiscoverDefects(t *testing.T) {
	invalid := func(reason string) want { return want{StatusInvalid, reason} }
	blocked := func(reason string) want { return want{StatusBlocked, reason} }
	one := func(manifest string) []plugin { return []plugin{{dir: "x", manifest: manifest}} }
	tests := []defect{
		{"unknown field", one(`{"name":"x","version":"1.0.0","command":"bin","colour":"red"}`),
			map[string]want{"x": invalid(`unknown field "colour"`)}},
		{"unknown nested field", one(ok("x", nil, `,"restart":{"retries":3}`)),
			map[string]want{"x": invalid(`unknown field "retries"`)}},
		{"trailing data", one(ok("x", nil, "") + ` {}`),
			map[string]want{"x": invalid("unexpected data after the manifest object at line 1")}},
		{"syntax error", one("{\n  \"name\": \"x\",\n  \"version\" \"1.0.0\"\n}"),
			map[string]want{"x": invalid("invalid JSON at line 3, column 13")}},
		{"truncated", one(`{"name":"x"`),
			map[string]want{"x": invalid("unexpected end of file")}},
		{"empty file", one(""),
			map[string]want{"x": invalid("empty file")}},
		{"bad type", one(`{"name":"x","version":"1.0.0","command":"bin","restart":{"max_restarts":"5"}}`),
			map[string]want{"x": invalid("field restart.max_restarts: expected an integer, got a string (line 1, column 73)")}},
		{"bad type enabled", one(ok("x", nil, `,"enabled":"yes"`)),
			map[string]want{"x": invalid("field enabled: expected true or false, got a string")}},
		{"missing name", one(`{"version":"1.0.0","command":"bin"}`),
			map[string]want{"x": invalid("name: required")}},
		{"bad name", []plugin{{dir: "d", manifest: ok("Bad Name", nil, "")}},
			map[string]want{"d": invalid(`name "Bad Name": must match`)}},
		{"missing version", one(`{"name":"x","command":"bin"}`),
			map[string]want{"x": invalid("version: required")}},
		{"bad semver", one(`{"name":"x","version":"1.0","command":"bin"}`),
			map[string]want{"x": invalid(`version "1.0": not a semantic version`)}},
		{"semver leading zero", one(`{"name":"x","version":"1.02.0","command":"bin"}`),
			map[string]want{"x": invalid("not a semantic version")}},
		{"bad duration", one(ok("x", nil, `,"stop_timeout":"10 seconds"`)),
			map[string]want{"x": invalid(`stop_timeout "10 seconds": not a duration`)}},
		{"bad backoff", one(ok("x", nil, `,"restart":{"initial_backoff":"fast"}`)),
			map[string]want{"x": invalid(`restart.initial_backoff "fast": not a duration`)}},
		{"negative duration", one(ok("x", nil, `,"restart":{"window":"-1s"}`)),
			map[string]want{"x": invalid(`restart.window "-1s": must be positive`)}},
		{"backoff order", one(ok("x", nil, `,"restart":{"initial_backoff":"2s","max_backoff":"1s"}`)),
			map[string]want{"x": invalid("restart.max_backoff 1s: less than initial_backoff 2s")}},
		{"negative max_restarts", one(ok("x", nil, `,"restart":{"max_restarts":-1}`)),
			map[string]want{"x": invalid("restart.max_restarts -1: must not be negative")}},
		{"bad policy", one(ok("x", nil, `,"restart":{"policy":"sometimes"}`)),
			map[string]want{"x": invalid(`restart.policy "sometimes"`)}},
		{"missing command", one(`{"name":"x","version":"1.0.0"}`),
			map[string]want{"x": invalid("command: required")}},
		{"command does not exist", []plugin{{dir: "x", manifest: ok("x", nil, ""), noBinary: true}},
			map[string]want{"x": invalid("does not exist")}},
		{"command not executable", []plugin{{dir: "x", manifest: ok("x", nil, ""), mode: 0o644}},
			map[string]want{"x": invalid("is not executable")}},
		{"command is a directory", one(`{"name":"x","version":"1.0.0","command":"."}`),
			map[string]want{"x": invalid("is not a regular file")}},
		{"bad sha256", one(ok("x", nil, `,"sha256":"abc"`)),
			map[string]want{"x": invalid("sha256: want 64 hex digits")}},
		{"bad mount", one(ok("x", nil, `,"mount":"x"`)),
			map[string]want{"x": invalid(`mount "x": must start with "/"`)}},
		{"duplicate mount", []plugin{
			{dir: "a", manifest: ok("a", nil, `,"mount":"/svc"`)},
			{dir: "b", manifest: ok("b", nil, `,"mount":"/svc"`)},
			{dir: "c", manifest: ok("c", []string{"b"}, "")},
		}, map[string]want{
			"a": {StatusOK, ""},
			"b": invalid(`mount "/svc": overlaps the mount "/svc" of plugin a`),
			"c": blocked("depends on invalid plugin b"),
		}},
		{"nested mounts", []plugin{
			{dir: "a", manifest: ok("a", nil, `,"mount":"/svc/inner"`)},
			{dir: "b", manifest: ok("b", nil, `,"mount":"/svc"`)},
			{dir: "c", manifest: ok("c", nil, `,"mount":"/svc-other"`)},
		}, map[string]want{
			"a": {StatusOK, ""},
			"b": invalid(`mount "/svc": overlaps the mount "/svc/inner" of plugin a`),
			"c": {StatusOK, ""},
		}},
		{"bad env name", one(ok("x", nil, `,"env":{"A=B":"c"}`)),
			map[string]want{"x": invalid(`env: invalid variable name "A=B"`)}},
		{"duplicate dependency", one(ok("x", []string{"good", "good"}, "")),
			map[string]want{"x": invalid(`dependencies: "good" listed twice`)}},
		{"duplicate name", []plugin{{dir: "a1", manifest: ok("x", nil, "")}, {dir: "a2", manifest: ok("x", nil, "")}},
			map[string]want{"x": {StatusOK, ""}, "a2": invalid(`duplicate plugin name "x": already used by `)}},
		{"self cycle", one(ok("x", []string{"x"}, "")),
			map[string]want{"x": invalid("dependency cycle: x -> x")}},
		{"cycle", []plugin{
			{dir: "a", manifest: ok("a", []string{"b"}, "")},
			{dir: "b", manifest: ok("b", []string{"c", "good"}, "")},
			{dir: "c", manifest: ok("c", []string{"a"}, "")},
			{dir: "d", manifest: ok("d", []string{"c"}, "")},
		}, map[string]want{
			"a": invalid("dependency cycle: a -> b -> c -> a"),
			"b": invalid("dependency cycle: b -> c -> a -> b"),
			"c": invalid("dependency cycle: c -> a -> b -> c"),
			"d": blocked("depends on invalid plugin c"),
		}},
		{"unknown dependency", one(ok("x", []string{"nope"}, "")),
			map[string]want{"x": blocked("depends on unknown plugin nope")}},
		{"dependents of invalid, blocked and disabled", []plugin{
			{dir: "a", manifest: `{"name":"a"}`},
			{dir: "b", manifest: ok("b", []string{"a"}, "")},
			{dir: "c", manifest: ok("c", []string{"b"}, "")},
			{dir: "d", manifest: ok("d", nil, `,"enabled":false`)},
			{dir: "e", manifest: ok("e", []string{"d"}, "")},
			{dir: "f", manifest: ok("f", []string{"d"}, `,"enabled":false`)},
			{dir: "g", manifest: `{"name":`},
			{dir: "h", manifest: ok("h", []string{"g"}, "")},
		}, map[string]want{
			"a": invalid("version: required"),
			"b": blocked("depends on invalid plugin a"),
			"c": blocked("depends on blocked plugin b"),
			"d": {StatusDisabled, "enabled: false"},
			"e": blocked("depends on disabled plugin d"),
			"f": {StatusDisabled, "enabled: false"},
			"g": invalid("unexpected end of file"),
			"h": blocked("depends on invalid plugin g"),
		}},
	}
	checkDefects(t, tests)
}

// TestDiscoverStrictDefects: what the strict JSON decoder refuses makes
// the plugin invalid with a reason naming the key and its line and column.
func TestDiscoverStrictDefects(t *testing.T) {
	invalid := func(reason string) want { return want{StatusInvalid, reason} }
	one := func(manifest string) []plugin { return []plugin{{dir: "x", manifest: manifest}} }
	checkDefects(t, []defect{
		{"int overflow", one(ok("x", nil, `,"restart":{"max_restarts":99999999999999999999}`)),
			map[string]want{"x": invalid("field restart.max_restarts: number 99999999999999999999 is out of range")}},
		{"duplicate key", one(`{"name":"x","version":"1.0.0","command":"bin","command":"/bin/sh"}`),
			map[string]want{"x": invalid(`invalid manifest at line 1, column 47: duplicate key "command"`)}},
		{"duplicate nested key", one("{\"name\":\"x\",\"version\":\"1.0.0\",\"command\":\"bin\",\n\"restart\":{\"policy\":\"never\",\n  \"policy\":\"always\"}}"),
			map[string]want{"x": invalid(`invalid manifest at line 3, column 3: duplicate key "policy" in restart`)}},
		{"wrong case", one(ok("x", nil, `,"Enabled":false`)),
			map[string]want{"x": invalid(`unknown field "Enabled": field names are case-sensitive (did you mean "enabled"?)`)}},
		{"wrong case nested", one(ok("x", nil, `,"restart":{"Policy":"never"}`)),
			map[string]want{"x": invalid(`unknown field "Policy" in restart: field names are case-sensitive`)}},
		{"invalid UTF-8", one(ok("x", nil, ",\"description\":\"caf\xe9\"")),
			map[string]want{"x": invalid("invalid manifest at line 1, column 83: invalid UTF-8 at byte offset 82 in description")}},
		{"lone surrogate", one(ok("x", nil, `,"env":{"K":"\udc00"}`)),
			map[string]want{"x": invalid(`escape of a lone UTF-16 surrogate \udc00 at byte offset 76 in env.K`)}},
	})
}

// checkDefects lays out each defect's plugins next to a good one and
// checks the status and reason of each plugin it names.
func checkDefects(t *testing.T, tests []defect) {
	t.Helper()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			plugins := append(slices.Clone(tc.plugins), plugin{dir: "good", manifest: ok("good", nil, "")})
			set, err := Discover(layout(t, plugins...))
			if err != nil {
				t.Fatal(err)
			}
			tc.want["good"] = want{StatusOK, ""}
			for name, w := range tc.want {
				e, found := set.Lookup(name)
				if !found {
					t.Errorf("%s: not discovered", name)
					continue
				}
				if e.Status != w.status || !strings.Contains(e.Reason, w.reason) {
					t.Errorf("%s: got %s %q, want %s containing %q", name, e.Status, e.Reason, w.status, w.reason)
				}
			}
			if !slices.Contains(set.StartOrder(), "good") {
				t.Errorf("good missing from start order %v", set.StartOrder())
			}
		})
	}
}

func TestStartTimeoutIsValidatedLikeStopTimeout(t *testing.T) {
	for extra, reason := range map[string]string{
		`,"start_timeout":"soon"`:  `start_timeout "soon": not a duration`,
		`,"start_timeout":"0s"`:    `start_timeout "0s": must be positive`,
		`,"start_timeout":"-1s"`:   `start_timeout "-1s": must be positive`,
		`,"start_timeout":5`:       "start_timeout",
		`,"start_timeout":"1e99h"`: "not a duration",
	} {
		set, err := Discover(layout(t, plugin{dir: "x", manifest: ok("x", nil, extra)}))
		if err != nil {
			t.Fatal(err)
		}
		if e, _ := set.Lookup("x"); e.Status != StatusInvalid || !strings.Contains(e.Reason, reason) {
			t.Errorf("%s: %s %q, want invalid %q", extra, e.Status, e.Reason, reason)
		}
	}
}

func TestValidMount(t *testing.T) {
	for _, m := range []string{"/client-manager", "/a", "/a/b.c/d_e~f", "/API", "/apis", "/v1/api"} {
		if err := ValidMount(m); err != nil {
			t.Errorf("ValidMount(%q) = %v, want nil", m, err)
		}
	}
	for m, why := range map[string]string{
		"":        `must start with "/"`,
		"client":  `must start with "/"`,
		"/":       "the root cannot be a mount",
		"/a/":     `must not end with "/"`,
		"/api":    "reserved",
		"/api/x":  "reserved",
		"//a":     "empty path segment",
		"/a//b":   "empty path segment",
		"/a/../b": `".." segments`,
		"/..":     `".." segments`,
		"/./a":    `".." segments`,
		"/a b":    "segments may only hold",
		"/a%2fb":  "segments may only hold",
		"/a?b":    "segments may only hold",
		"/café":   "segments may only hold",
	} {
		if err := ValidMount(m); err == nil || !strings.Contains(err.Error(), why) {
			t.Errorf("ValidMount(%q) = %v, want an error containing %q", m, err, why)
		}
	}
}

func TestPosition(t *testing.T) {
	got := []struct{ offset, line, col int }{{0, 1, 1}, {3, 1, 4}, {4, 2, 1}, {6, 2, 3}}
	data := []byte("abc\ndef")
	for _, g := range got {
		l, c := position(data, int64(g.offset))
		if l != g.line || c != g.col {
			t.Errorf("position(%d) = %d:%d, want %d:%d", g.offset, l, c, g.line, g.col)
		}
	}
}
