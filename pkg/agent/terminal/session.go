package terminal

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// pollInterval is how often an ending session checks that its processes
// are gone.
const pollInterval = 10 * time.Millisecond

// Session is one shell on one PTY, opened by [Manager.Open]. One goroutine
// may Read while another Writes; Resize, Signal, Close, Wait and Done may be
// called from any goroutine at any time.
type Session struct {
	m    *Manager
	cmd  *exec.Cmd
	pty  *os.File
	pid  int
	last atomic.Int64 // time of the last input or output, in ns

	stop     chan error // why the session was asked to end
	stopOnce sync.Once
	exited   chan struct{} // closed when the shell was reaped
	done     chan struct{} // closed when the session is over
	code     int           // the shell's exit code, set before exited closes
	reason   error         // why the session ended, set before done closes
}

// PID returns the process id of the shell, which is also the id of its
// session and process group.
func (s *Session) PID() int { return s.pid }

// Read reads the terminal's output (what the programs in it write, and the
// echo of the input). It blocks until output is available; it returns
// io.EOF once the session has ended and the output left in the PTY has been
// read, or at once after Close. Only one goroutine should Read at a time.
func (s *Session) Read(p []byte) (int, error) {
	n, err := s.pty.Read(p)
	if n > 0 {
		s.touch()
	}
	if err != nil && (errors.Is(err, syscall.EIO) || errors.Is(err, os.ErrClosed)) {
		err = io.EOF
	}
	return n, err
}

// Write sends input to the terminal as if typed: 0x03 (Ctrl-C) makes the
// line discipline send SIGINT to the foreground process group, 0x04
// (Ctrl-D) ends a line of input. It blocks while the PTY's input buffer is
// full (no program reads); Close unblocks it. After the session has ended
// it returns an error wrapping [ErrClosed]. Only one goroutine should Write
// at a time.
func (s *Session) Write(p []byte) (int, error) {
	select {
	case <-s.exited:
		return 0, ErrClosed
	default:
	}
	s.touch()
	n, err := s.pty.Write(p)
	if err != nil {
		return n, fmt.Errorf("%w: %w", ErrClosed, err)
	}
	return n, nil
}

// Resize sets the terminal's size; the foreground programs get SIGWINCH.
// It returns an error wrapping [ErrBadRequest] for a size outside
// 1..[MaxDimension], or wrapping [ErrClosed] after Close.
func (s *Session) Resize(cols, rows int) error {
	if err := checkSize(cols, rows); err != nil {
		return err
	}
	if err := setSize(s.pty, cols, rows); err != nil {
		return fmt.Errorf("%w: %w", ErrClosed, err)
	}
	return nil
}

// Signal sends sig to the terminal's foreground process group (the job
// the user sees running, or the shell at its prompt). Writing 0x03 has the
// same effect for SIGINT, subject to the terminal's settings. It returns an
// error wrapping [ErrClosed] once the session has ended.
func (s *Session) Signal(sig syscall.Signal) error {
	select {
	case <-s.exited:
		return ErrClosed
	default:
	}
	pgid, err := foreground(s.pty)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrClosed, err)
	}
	return signalGroup(pgid, sig)
}

// Done returns a channel closed when the session is over: the shell has
// exited and every process left in the session was killed.
func (s *Session) Done() <-chan struct{} { return s.done }

// Wait blocks until the session is over and returns the shell's exit code
// (-1 if a signal killed it) and why the session ended: nil when the shell
// exited on its own, [ErrClosed] after Close, [ErrIdleTimeout] after the
// idle timeout. Any number of goroutines may Wait, any number of times.
func (s *Session) Wait() (exitCode int, err error) {
	<-s.done
	return s.code, s.reason
}

// Close ends the session: it kills every process of the session (SIGHUP,
// then SIGKILL after [Config.KillGrace]), closes the PTY (a blocked Read or
// Write returns) and releases the session's slot. It blocks until the
// session is over (see Done). It must be called once the caller is done
// with a session, even one that ended on its own, to release the PTY. It is
// idempotent and safe to call concurrently; every call returns nil.
func (s *Session) Close() error {
	s.end(ErrClosed)
	<-s.done
	_ = s.pty.Close() // a session that ended on its own kept it for Read
	return nil
}

// end asks the supervisor to end the session for reason (first call wins).
func (s *Session) end(reason error) {
	s.stopOnce.Do(func() { s.stop <- reason })
}

// touch records input or output for the idle timeout.
func (s *Session) touch() { s.last.Store(now()) }

// reap waits for the shell and records its exit code.
func (s *Session) reap() {
	_ = s.cmd.Wait()
	s.code = s.cmd.ProcessState.ExitCode()
	close(s.exited)
}

// supervise waits for the session to end for any reason, then kills what
// is left of it and marks it over.
func (s *Session) supervise() {
	reason := s.waitEnd()
	grace := s.m.cfg.KillGrace
	fg, _ := foreground(s.pty)
	signalSession(s.pid, fg, syscall.SIGHUP)
	if reason != nil {
		// Ended by us: hang the terminal up, which also unblocks Read
		// and Write. A shell that exited on its own keeps the PTY until
		// Close, so that its last output can still be read.
		_ = s.pty.Close()
	}
	if !s.waitGone(time.Now().Add(grace)) {
		signalSession(s.pid, fg, syscall.SIGKILL)
		s.waitGone(time.Now().Add(grace + time.Second))
	}
	<-s.exited // the shell got SIGKILL at the latest
	s.reason = reason
	s.m.release(s)
	close(s.done)
}

// waitEnd blocks until the shell exits, the session is asked to end, or
// it has been idle for the idle timeout, and says why (nil: the shell
// exited).
func (s *Session) waitEnd() error {
	idle := s.m.cfg.IdleTimeout
	t := time.NewTimer(idle)
	defer t.Stop()
	for {
		select {
		case <-s.exited:
			return nil
		case reason := <-s.stop:
			return reason
		case <-t.C:
			left := idle - time.Duration(now()-s.last.Load())
			if left <= 0 {
				return ErrIdleTimeout
			}
			t.Reset(left)
		}
	}
}

// waitGone waits until the shell has exited and no other process of its
// session is alive, or until deadline; it reports whether they are gone.
func (s *Session) waitGone(deadline time.Time) bool {
	for {
		select {
		case <-s.exited:
			if len(sessionMembers(s.pid)) == 0 {
				return true
			}
		default:
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(pollInterval)
	}
}
