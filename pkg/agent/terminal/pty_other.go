//go:build !unix

package terminal

import (
	"os"
	"os/exec"
	"syscall"
)

// identity is the account a session's shell runs as.
type identity struct{ name, home string }

func lookupIdentity(string) (identity, error)                  { return identity{}, ErrUnsupported }
func startPTY(*exec.Cmd, identity, int, int) (*os.File, error) { return nil, ErrUnsupported }
func setSize(*os.File, int, int) error                         { return ErrUnsupported }
func foreground(*os.File) (int, error)                         { return 0, ErrUnsupported }
func signalGroup(int, syscall.Signal) error                    { return ErrUnsupported }
func signalSession(int, int, syscall.Signal)                   {}
func sessionMembers(int) []int                                 { return nil }
