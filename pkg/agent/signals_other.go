//go:build !unix

package agent

import "syscall"

// terminalSignals is empty: there are no terminals without PTYs.
var terminalSignals = map[string]syscall.Signal{}
