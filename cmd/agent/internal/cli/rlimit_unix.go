//go:build unix

package cli

import (
	"fmt"
	"syscall"
)

// checkOpenFiles reports an error if n connections (plus a margin) would
// exceed the process's open-file limit.
func checkOpenFiles(n int) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return err
	}
	if need := uint64(n) + 64; need > lim.Cur {
		return fmt.Errorf("%d agents need about %d open files; the limit is %d", n, need, lim.Cur)
	}
	return nil
}
