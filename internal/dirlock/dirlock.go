// Package dirlock makes a directory (a data dir, a state dir, an agent's
// journal) belong to one process at a time: an exclusive flock(2) on a lock
// file in it, held until Release or the process's end, whichever comes
// first. The kernel drops the lock when the process dies, so a crash never
// leaves a stale lock behind.
package dirlock

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// ErrHeld is matched (errors.Is) by the error Acquire returns when another
// holder has the lock.
var ErrHeld = errors.New("held by another process")

// HeldError says who holds a lock that Acquire could not take.
type HeldError struct {
	Path string // the lock file
	PID  int    // the holder's pid as it recorded it; 0 when unknown
}

// Error names the lock file and the holder's pid.
func (e *HeldError) Error() string {
	if e.PID == 0 {
		return fmt.Sprintf("%s is locked by another process", e.Path)
	}
	return fmt.Sprintf("%s is locked by another process (pid %d)", e.Path, e.PID)
}

// Is makes errors.Is(err, ErrHeld) true.
func (e *HeldError) Is(target error) bool { return target == ErrHeld }

// Lock is a held lock. Its zero value is not usable; get one from Acquire.
type Lock struct {
	f *os.File
}

// Acquire takes the exclusive lock on the file path (created with mode
// 0600 if missing; its directory must exist) without blocking, and records
// the caller's pid in it. When another open file holds it, Acquire returns
// a *HeldError naming the holder's pid. A second Acquire of the same path
// in one process fails the same way.
func Acquire(path string) (*Lock, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, &HeldError{Path: path, PID: readPID(path)}
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &Lock{f: f}, nil
}

// AcquireDir takes the lock file name in dir, creating dir (mode 0700) if
// needed. See Acquire.
func AcquireDir(dir, name string) (*Lock, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	return Acquire(filepath.Join(dir, name))
}

// Release gives the lock up. The lock file stays (removing it would race
// with a new holder). A second Release does nothing.
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}

func readPID(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0
	}
	return pid
}
