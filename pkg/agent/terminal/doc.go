// Package terminal runs interactive shells on pseudo-terminals for an
// agent: the agent side of a remote terminal session.
//
// A [Manager] holds the agent's own terminal policy ([Config]): sessions are
// refused unless the agent's configuration enables them and names the shell
// (and, optionally, the user it runs as); the server cannot choose either.
// [Manager.Open] starts the shell on a new PTY as the leader of a new
// session (setsid), with a minimal environment, and returns a [*Session]
// whose output is read with [Session.Read] and whose input is written with
// [Session.Write].
//
// Whatever ends a session (the shell exits, [Session.Close], the idle
// timeout, [Manager.Close]), every process still in it is killed: SIGHUP,
// then SIGKILL after [Config.KillGrace], sent to the shell's process group,
// to the terminal's foreground process group and, on Linux, to every
// process whose session id is the shell's (found in /proc), which includes
// background jobs in their own process groups and their children. A process
// that starts a session of its own (setsid) or double-forks into one leaves
// the terminal's session and is not killed; so does anything that changes
// its session id in the short window between the scan and the kill.
//
// Errors that describe a refusal are of type [*Error] and carry a stable
// [Error.Code] for the protocol.
package terminal
