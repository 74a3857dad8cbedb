package manifest

import (
	"encoding/hex"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzLoad feeds arbitrary plugin.json files to Load: it must never panic,
// every defect must be an error, and a manifest it accepts must hold
// every invariant the supervisor relies on. The manifest's directory holds
// an executable "plugin" and a non-executable "data" file. Seeds are in
// testdata/fuzz/FuzzLoad.
func FuzzLoad(f *testing.F) {
	dir := f.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "plugin"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		f.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "data"), nil, 0o644); err != nil {
		f.Fatal(err)
	}
	path := filepath.Join(dir, FileName)
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		m, err := Load(path)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		checkManifest(t, m)
	})
}

// checkManifest fails t unless m holds the invariants of a valid manifest.
func checkManifest(t *testing.T, m Manifest) {
	t.Helper()
	fail := func(what string) { t.Fatalf("accepted manifest %+v: %s", m, what) }
	switch {
	case !nameRE.MatchString(m.Name):
		fail("bad name")
	case !semverRE.MatchString(m.Version):
		fail("bad version")
	case !filepath.IsAbs(m.Command):
		fail("relative command")
	case slices.Contains(m.Dependencies, m.Name):
		fail("depends on itself")
	case m.Restart.InitialBackoff <= 0 || m.Restart.MaxBackoff < m.Restart.InitialBackoff || m.Restart.Window <= 0:
		fail("bad backoff or window")
	case m.Restart.MaxRestarts < 0 || m.StopTimeout <= 0 || m.StartTimeout <= 0:
		fail("bad restart count, stop or start timeout")
	case !slices.Contains([]Policy{PolicyAlways, PolicyOnFailure, PolicyNever}, m.Restart.Policy):
		fail("bad policy")
	case m.Mount != "" && !strings.HasPrefix(m.Mount, "/"):
		fail("bad mount")
	case !utf8.ValidString(m.Description) || slices.ContainsFunc(m.Args, notUTF8) || slices.ContainsFunc(slices.Collect(maps.Values(m.Env)), notUTF8):
		fail("invalid UTF-8 accepted")
	}
	if fi, err := os.Stat(m.Command); err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		fail("command is not an executable file")
	}
	if b, err := hex.DecodeString(m.SHA256); err != nil || len(b) != 32 && len(b) != 0 {
		fail("bad sha256")
	}
	seen := map[string]bool{}
	for _, d := range m.Dependencies {
		if !nameRE.MatchString(d) || seen[d] {
			fail("bad or repeated dependency")
		}
		seen[d] = true
	}
	for k := range m.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			fail("bad env name")
		}
	}
}

// notUTF8 reports whether s is not valid UTF-8.
func notUTF8(s string) bool { return !utf8.ValidString(s) }
