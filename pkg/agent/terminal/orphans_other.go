//go:build !linux

package terminal

// SessionID identifies a session across agent restarts: the shell's pid
// and its start time. Only Linux (/proc) has them.
type SessionID struct {
	PID   int    `json:"pid"`
	Start uint64 `json:"start"`
}

// ID returns false: without /proc a session cannot be identified across
// restarts.
func (s *Session) ID() (SessionID, bool) { return SessionID{PID: s.pid}, false }

// KillOrphan does nothing without /proc and returns 0.
func KillOrphan(SessionID) int { return 0 }
