package manifest

import (
	"strings"
	"testing"
)

// TestShippedManifests checks the manifests the repository ships: the one
// `make run` uses and the container image's. Their commands exist only
// after a build (or inside the image), so only that defect is tolerated.
func TestShippedManifests(t *testing.T) {
	for _, path := range []string{
		"../../plugins/client_manager/plugin.json",
		"../../deploy/container/plugins/client_manager/plugin.json",
	} {
		m, err := Load(path)
		if err != nil && !strings.Contains(err.Error(), "command") {
			t.Errorf("%s: %v", path, err)
		}
		if m.Name != "client_manager" || m.Version == "" {
			t.Errorf("%s: decoded %+v", path, m)
		}
	}
}
