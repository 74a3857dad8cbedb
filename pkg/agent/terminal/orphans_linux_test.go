package terminal

import (
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// startOrphan starts a session leader that ignores SIGHUP with a
// background child, as a shell left by a killed agent might be.
func startOrphan(t *testing.T) (*exec.Cmd, SessionID) {
	t.Helper()
	cmd := exec.Command("/bin/sh", "-c", `trap "" HUP; sleep 300 & wait`)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = cmd.Wait() }()
	t.Cleanup(func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
	deadline := time.Now().Add(waitLong)
	for len(sessionMembers(cmd.Process.Pid)) < 2 {
		if time.Now().After(deadline) {
			t.Fatal("the orphan's child never started")
		}
		time.Sleep(5 * time.Millisecond)
	}
	p, ok := readProc(cmd.Process.Pid)
	if !ok {
		t.Fatal("cannot read the orphan's /proc entry")
	}
	return cmd, SessionID{PID: cmd.Process.Pid, Start: p.start}
}

func TestKillOrphan(t *testing.T) {
	_, id := startOrphan(t)
	members := sessionMembers(id.PID)
	if n := KillOrphan(id); n != len(members) {
		t.Errorf("KillOrphan signalled %d processes, want %d", n, len(members))
	}
	for _, pid := range members {
		if alive(pid) {
			t.Errorf("process %d of the orphan session still alive", pid)
		}
	}
}

func TestKillOrphanSparesReusedPID(t *testing.T) {
	_, id := startOrphan(t)
	wrong := id
	wrong.Start++ // as if the pid now belonged to another process
	if n := KillOrphan(wrong); n != 0 {
		t.Errorf("KillOrphan signalled %d processes of a session with another start time", n)
	}
	if !alive(id.PID) || len(sessionMembers(id.PID)) < 2 {
		t.Error("the session with another start time was killed")
	}
}

func TestSessionID(t *testing.T) {
	s := openTerm(t, newManager(t, shellConfig()), OpenRequest{})
	id, ok := s.ID()
	p, _ := readProc(s.PID())
	if !ok || id.PID != s.PID() || id.Start != p.start || id.Start == 0 {
		t.Errorf("ID() = %+v, %v; want pid %d start %d", id, ok, s.PID(), p.start)
	}
}
