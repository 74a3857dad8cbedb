//go:build !unix

package agent

import "os/exec"

// ownProcessGroup is a no-op where process groups do not exist: context
// cancellation kills the process only.
func ownProcessGroup(*exec.Cmd) {}

// killProcessGroup kills the process only.
func killProcessGroup(c *exec.Cmd) error { return c.Process.Kill() }
