//go:build unix

package agent

import (
	"os/exec"
	"syscall"
)

// ownProcessGroup makes c the leader of a new process group and makes its
// context cancellation kill the whole group.
func ownProcessGroup(c *exec.Cmd) {
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	c.Cancel = func() error { return killProcessGroup(c) }
}

// killProcessGroup sends SIGKILL to every process in c's process group.
func killProcessGroup(c *exec.Cmd) error {
	return syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
}
