package supervisor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// procInfo is what /proc/<pid>/stat says about a process.
type procInfo struct {
	// State is the one-letter state: 'Z' (zombie) and 'X' (dead) have
	// exited.
	State byte
	PGID  int
	// StartTime is when the process started, in clock ticks after boot.
	StartTime uint64
}

// exited reports whether the process has ended (it may be a zombie
// waiting for its parent).
func (p procInfo) exited() bool { return p.State == 'Z' || p.State == 'X' }

// errNoProcess means /proc has no entry for the pid.
var errNoProcess = errors.New("no such process")

// readProc reads /proc/<pid>/stat.
func readProc(pid int) (procInfo, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ESRCH) {
		return procInfo{}, errNoProcess
	}
	if err != nil {
		return procInfo{}, fmt.Errorf("process %d: %w", pid, err)
	}
	// The command name, in parentheses, may hold spaces and parentheses;
	// the fields after the last ")" are state, ppid, pgrp, ... starttime
	// (the 20th after the name).
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return procInfo{}, fmt.Errorf("process %d: malformed stat", pid)
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 20 || len(f[0]) != 1 {
		return procInfo{}, fmt.Errorf("process %d: malformed stat", pid)
	}
	pgid, err1 := strconv.Atoi(f[2])
	start, err2 := strconv.ParseUint(f[19], 10, 64)
	if err1 != nil || err2 != nil {
		return procInfo{}, fmt.Errorf("process %d: malformed stat", pid)
	}
	return procInfo{State: f[0][0], PGID: pgid, StartTime: start}, nil
}

// procExe returns the path of the executable pid runs. A path replaced or
// removed since the process started comes without its " (deleted)"
// suffix.
func procExe(pid int) (string, error) {
	exe, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe")
	if err != nil {
		return "", fmt.Errorf("process %d: %w", pid, err)
	}
	return strings.TrimSuffix(exe, " (deleted)"), nil
}

// orphan is a plugin process started by an earlier runtime: it is not
// this runtime's child, so it cannot be waited for. It implements
// go-plugin's runner.AttachedRunner for a re-attached client, which
// otherwise polls the pid once a second with kill(pid, 0) — blind to a
// zombie nobody reaps.
type orphan struct {
	pid       int
	startTime uint64
}

// alive reports whether the process still runs (not a zombie).
func (o *orphan) alive() bool {
	p, err := readProc(o.pid)
	return err == nil && p.StartTime == o.startTime && !p.exited()
}

// Wait implements runner.AttachedRunner: it polls every exitPoll until
// the process has exited or ctx ends.
func (o *orphan) Wait(ctx context.Context) error {
	tick := time.NewTicker(exitPoll)
	defer tick.Stop()
	for o.alive() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	return nil
}

// Kill implements runner.AttachedRunner: SIGKILL to the process group.
func (o *orphan) Kill(context.Context) error { return o.signal(syscall.SIGKILL) }

// signal sends sig to the process group the orphan leads. If the pid now
// belongs to another process, the group is gone (Linux keeps a pid in use
// while it names a process group) and nothing is signalled.
func (o *orphan) signal(sig syscall.Signal) error {
	p, err := readProc(o.pid)
	if err == nil && p.StartTime != o.startTime {
		return nil
	}
	if err != nil && !errors.Is(err, errNoProcess) {
		return err
	}
	if err := syscall.Kill(-o.pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal %s to process group %d: %w", unix.SignalName(sig), o.pid, err)
	}
	return nil
}

// ID implements runner.AttachedRunner.
func (o *orphan) ID() string { return strconv.Itoa(o.pid) }

// PluginToHost implements runner.AddrTranslator.
func (o *orphan) PluginToHost(network, addr string) (string, string, error) {
	return network, addr, nil
}

// HostToPlugin implements runner.AddrTranslator.
func (o *orphan) HostToPlugin(network, addr string) (string, string, error) {
	return network, addr, nil
}
