// Package testbin builds the project's commands once per test binary, for
// tests that run them as real processes.
package testbin

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
)

// Main builds pkgs (import paths of main packages) with go build into a
// temporary directory, stores its path in *dir, runs the tests, removes
// the directory and exits with the tests' code. Call it from TestMain.
// A failed build exits with code 1 before any test runs.
func Main(m *testing.M, dir *string, pkgs ...string) {
	tmp, err := os.MkdirTemp("", "testbin")
	if err != nil {
		fmt.Fprintln(os.Stderr, "testbin:", err)
		os.Exit(1)
	}
	build := exec.Command("go", append([]string{"build", "-o", tmp + string(os.PathSeparator)}, pkgs...)...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "testbin: building", pkgs, ":", err)
		_ = os.RemoveAll(tmp)
		os.Exit(1)
	}
	*dir = tmp
	code := m.Run()
	_ = os.RemoveAll(tmp)
	os.Exit(code)
}
