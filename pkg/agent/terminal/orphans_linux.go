package terminal

import (
	"syscall"
	"time"
)

// orphanRounds bounds how many times KillOrphan scans for members again
// (a member may fork while it is being killed).
const orphanRounds = 20

// SessionID identifies a session across agent restarts: the shell's pid,
// which is also its session id, and the shell's start time (clock ticks
// after boot, from /proc), so that a reused pid is not mistaken for it.
type SessionID struct {
	PID   int    `json:"pid"`
	Start uint64 `json:"start"`
}

// ID returns the session's SessionID; ok is false where the start time
// cannot be read (no /proc, or the shell is already gone).
func (s *Session) ID() (id SessionID, ok bool) {
	p, ok := readProc(s.pid)
	return SessionID{PID: s.pid, Start: p.start}, ok
}

// KillOrphan kills, with SIGKILL, what is left of a session that a
// previous agent process started and could not end (it was killed): the
// shell's process group and every process whose session id is id.PID. If
// the shell is alive but started at another time than id.Start, its pid
// was reused and nothing is killed. If the shell is gone, only session
// members started at or after id.Start are killed. It returns the number
// of processes it signalled and blocks until they are gone (a few seconds at
// most).
func KillOrphan(id SessionID) int {
	if id.PID <= 1 {
		return 0
	}
	if p, ok := readProc(id.PID); ok && p.live() && p.start != id.Start {
		return 0
	}
	killed := map[int]bool{}
	for range orphanRounds {
		members := orphanMembers(id)
		if len(members) == 0 {
			break
		}
		if p, ok := readProc(id.PID); ok && p.live() {
			_ = syscall.Kill(-id.PID, syscall.SIGKILL)
		}
		for _, pid := range members {
			if syscall.Kill(pid, syscall.SIGKILL) == nil {
				killed[pid] = true
			}
		}
		time.Sleep(pollInterval)
	}
	return len(killed)
}

// orphanMembers lists the live processes of session id.PID started at or
// after id.Start.
func orphanMembers(id SessionID) []int {
	var pids []int
	eachProcess(func(pid int, p procInfo) {
		if p.sid == id.PID && p.live() && p.start >= id.Start {
			pids = append(pids, pid)
		}
	})
	return pids
}
