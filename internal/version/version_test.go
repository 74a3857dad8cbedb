package version

import (
	"runtime"
	"strings"
	"testing"
)

func TestGet(t *testing.T) {
	i := Get()
	if i.Version == "" || i.Commit == "" {
		t.Fatalf("empty fields: %+v", i)
	}
	if i.GoVersion != runtime.Version() {
		t.Fatalf("GoVersion = %q, want %q", i.GoVersion, runtime.Version())
	}
}

func TestLinkerFlagsWin(t *testing.T) {
	old, oldCommit := version, commit
	t.Cleanup(func() { version, commit = old, oldCommit })
	version, commit = "v9.9.9", "abc123"
	got := String("runtime")
	for _, want := range []string{"runtime v9.9.9", "commit abc123", runtime.Version()} {
		if !strings.Contains(got, want) {
			t.Fatalf("String() = %q, missing %q", got, want)
		}
	}
}
