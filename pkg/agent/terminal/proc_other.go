//go:build unix && !linux

package terminal

// sessionMembers is empty where /proc is not available: only the shell's
// process group and the terminal's foreground group are signalled.
func sessionMembers(int) []int { return nil }
