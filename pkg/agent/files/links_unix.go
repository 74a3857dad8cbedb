//go:build unix

package files

import (
	"io/fs"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// links is the hard link count of fi (1 where unknown).
func links(fi fs.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Nlink)
	}
	return 1
}

// lock takes an exclusive advisory lock on f without waiting; it reports
// false if another open file description (this process or another) holds
// one. The lock ends when f is closed.
func lock(f *os.File) (bool, error) {
	var locked bool
	sc, err := f.SyscallConn()
	if err != nil {
		return false, err
	}
	var lerr error
	err = sc.Control(func(fd uintptr) {
		lerr = unix.Flock(int(fd), unix.LOCK_EX|unix.LOCK_NB)
		locked = lerr == nil
		if lerr == unix.EWOULDBLOCK {
			lerr = nil
		}
	})
	if err != nil {
		return false, err
	}
	return locked, lerr
}
