package terminal

import (
	"bytes"
	"os"
	"strconv"
)

// procInfo is what this package reads from /proc/<pid>/stat.
type procInfo struct {
	sid   int
	state byte
	start uint64 // clock ticks after boot
}

// live reports whether the process is neither a zombie nor dead.
func (p procInfo) live() bool { return p.state != 'Z' && p.state != 'X' }

// sessionMembers returns the live (not zombie) processes whose session id
// is sid, read from /proc.
func sessionMembers(sid int) []int {
	var pids []int
	eachProcess(func(pid int, p procInfo) {
		if p.sid == sid && p.live() {
			pids = append(pids, pid)
		}
	})
	return pids
}

// eachProcess calls fn for every process listed in /proc.
func eachProcess(fn func(pid int, p procInfo)) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if p, ok := readProc(pid); ok {
			fn(pid, p)
		}
	}
}

// readProc reads the session id, state and start time of pid from
// /proc/pid/stat: "pid (comm) state ppid pgrp session ... starttime ...",
// where comm may hold spaces and parentheses and starttime is field 22.
func readProc(pid int) (procInfo, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procInfo{}, false
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procInfo{}, false
	}
	f := bytes.Fields(b[i+1:])
	if len(f) < 20 || len(f[0]) != 1 {
		return procInfo{}, false
	}
	sid, err1 := strconv.Atoi(string(f[3]))
	start, err2 := strconv.ParseUint(string(f[19]), 10, 64)
	return procInfo{sid: sid, state: f[0][0], start: start}, err1 == nil && err2 == nil
}
