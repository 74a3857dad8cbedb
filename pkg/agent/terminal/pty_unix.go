//go:build unix

package terminal

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"syscall"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"
)

// identity is the account a session's shell runs as.
type identity struct {
	name, home string
	// cred is nil when the shell runs as the agent's own account.
	cred *syscall.Credential
}

// lookupIdentity resolves the configured user ("" for the agent's own).
func lookupIdentity(name string) (identity, error) {
	if name == "" {
		u, err := user.Current()
		if err != nil {
			return identity{name: os.Getenv("USER"), home: os.Getenv("HOME")}, nil
		}
		return identity{name: u.Username, home: u.HomeDir}, nil
	}
	u, err := user.Lookup(name)
	if errors.Is(err, user.UnknownUserError(name)) {
		u, err = user.LookupId(name)
	}
	if err != nil {
		return identity{}, fmt.Errorf("terminal: user %q: %w", name, err)
	}
	cred, err := credential(u)
	if err != nil {
		return identity{}, fmt.Errorf("terminal: user %q: %w", name, err)
	}
	id := identity{name: u.Username, home: u.HomeDir}
	if int(cred.Uid) == os.Geteuid() && int(cred.Gid) == os.Getegid() {
		return id, nil
	}
	if os.Geteuid() != 0 {
		return identity{}, fmt.Errorf("terminal: running shells as %q needs an agent running as root", name)
	}
	id.cred = cred
	return id, nil
}

// credential is u's uid, gid and supplementary groups.
func credential(u *user.User) (*syscall.Credential, error) {
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("uid %q: %w", u.Uid, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("gid %q: %w", u.Gid, err)
	}
	ids, err := u.GroupIds()
	if err != nil {
		return nil, fmt.Errorf("groups: %w", err)
	}
	groups := make([]uint32, 0, len(ids))
	for _, g := range ids {
		n, err := strconv.ParseUint(g, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("group id %q: %w", g, err)
		}
		groups = append(groups, uint32(n))
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: groups}, nil
}

// startPTY starts cmd as the leader of a new session whose controlling
// terminal is a new PTY of the given size, and returns the PTY's master,
// non-blocking so that Close interrupts a pending Read or Write.
func startPTY(cmd *exec.Cmd, id identity, cols, rows int) (*os.File, error) {
	master, tty, err := pty.Open()
	if err != nil {
		return nil, err
	}
	defer func() { _ = tty.Close() }()
	defer func() { _ = master.Close() }() // the pollable copy below stays
	if err := pty.Setsize(tty, &pty.Winsize{Cols: uint16(cols), Rows: uint16(rows)}); err != nil {
		return nil, err
	}
	// pty.Open switched master to blocking mode (os.File.Fd); a duplicate
	// made non-blocking is registered with the runtime's poller again.
	fd, err := unix.FcntlInt(master.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		_ = unix.Close(fd)
		return nil, err
	}
	f := os.NewFile(uintptr(fd), master.Name())
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0, Credential: id.cred}
	if err := cmd.Start(); err != nil {
		_ = f.Close()
		return nil, err
	}
	return f, nil
}

// control runs fn on the descriptor of f without changing its mode.
func control(f *os.File, fn func(fd int) error) error {
	sc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := sc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

// setSize sets the terminal size of the PTY whose master is f; the kernel
// sends SIGWINCH to its foreground process group.
func setSize(f *os.File, cols, rows int) error {
	return control(f, func(fd int) error {
		return unix.IoctlSetWinsize(fd, unix.TIOCSWINSZ, &unix.Winsize{Col: uint16(cols), Row: uint16(rows)})
	})
}

// foreground returns the foreground process group of the PTY whose master
// is f (TIOCGPGRP).
func foreground(f *os.File) (int, error) {
	var pgid int
	err := control(f, func(fd int) error {
		var err error
		pgid, err = unix.IoctlGetInt(fd, unix.TIOCGPGRP)
		return err
	})
	return pgid, err
}

// signalGroup sends sig to the process group pgid (ignored if pgid <= 1).
func signalGroup(pgid int, sig syscall.Signal) error {
	if pgid <= 1 {
		return nil
	}
	return syscall.Kill(-pgid, sig)
}

// signalSession sends sig to the process groups leader and fg and to every
// process of the session sid (Linux), ignoring processes already gone.
func signalSession(sid, fg int, sig syscall.Signal) {
	_ = signalGroup(sid, sig)
	_ = signalGroup(fg, sig)
	for _, pid := range sessionMembers(sid) {
		_ = syscall.Kill(pid, sig)
	}
}
