//go:build unix

package agent

import "syscall"

// terminalSignals are the signals a terminal_signal may name.
var terminalSignals = map[string]syscall.Signal{
	"SIGINT": syscall.SIGINT, "SIGTERM": syscall.SIGTERM, "SIGHUP": syscall.SIGHUP,
	"SIGQUIT": syscall.SIGQUIT, "SIGKILL": syscall.SIGKILL, "SIGTSTP": syscall.SIGTSTP,
	"SIGCONT": syscall.SIGCONT, "SIGWINCH": syscall.SIGWINCH, "SIGUSR1": syscall.SIGUSR1,
	"SIGUSR2": syscall.SIGUSR2,
}
