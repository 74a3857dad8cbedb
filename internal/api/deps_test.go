package api

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependsOnNoAdapter: the API reaches dispatch, the hub, enrollment
// and the store only through the interfaces it declares (Commands,
// Presence, Enrollment, fleet.Store), so it imports none of them, nor the
// WebSocket library.
func TestDependsOnNoAdapter(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, banned := range []string{"/internal/dispatch", "/internal/hub", "/internal/sqlite", "/internal/enroll", "github.com/coder/websocket"} {
			if strings.HasSuffix(dep, banned) || dep == banned {
				t.Errorf("internal/api depends on %s", dep)
			}
		}
	}
}
