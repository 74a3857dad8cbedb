// Package version holds the build's version, set once by the Makefile
// through -ldflags:
//
//	-X github.com/home-console/client-manager/internal/version.version=$(git describe --tags --always --dirty)
//	-X github.com/home-console/client-manager/internal/version.commit=$(git rev-parse HEAD)
//
// A binary built without them (go build, go install) falls back to what
// the Go toolchain recorded in the binary (runtime/debug.ReadBuildInfo).
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Set by -ldflags; empty in a plain go build.
var (
	version string
	commit  string
)

// Info describes the running binary.
type Info struct {
	Version   string `json:"version"`
	Commit    string `json:"commit"`
	GoVersion string `json:"go_version"`
}

// Get returns the binary's version, commit and Go version. Version is
// "devel" and Commit "unknown" when neither the linker flags nor the build
// info say more.
func Get() Info {
	info := Info{Version: version, Commit: commit, GoVersion: runtime.Version()}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if info.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			info.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && info.Commit == "" {
				info.Commit = s.Value
			}
		}
	}
	if info.Version == "" {
		info.Version = "devel"
	}
	if info.Commit == "" {
		info.Commit = "unknown"
	}
	return info
}

// String is the line a binary prints for --version, e.g.
// "runtime v0.2.0 (commit 1a2b3c…, go1.26.8)".
func String(program string) string {
	i := Get()
	return fmt.Sprintf("%s %s (commit %s, %s)", program, i.Version, i.Commit, i.GoVersion)
}
