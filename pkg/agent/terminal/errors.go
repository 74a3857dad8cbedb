package terminal

// Error is a refusal or an ending of this package, with a stable code that
// travels in protocol messages. Compare with errors.Is against the
// sentinels below; errors.As with a *Error gives the code of a wrapped one.
type Error struct {
	code string
	text string
}

// Error returns the human-readable text.
func (e *Error) Error() string { return e.text }

// Code returns the stable identifier of the error, e.g. "terminal_disabled".
func (e *Error) Code() string { return e.code }

// The errors of this package.
var (
	// ErrDisabled: the agent's configuration does not enable terminals.
	ErrDisabled = &Error{"terminal_disabled", "terminal sessions are not enabled on this agent"}
	// ErrTooManySessions: the agent already runs [Config.MaxSessions].
	ErrTooManySessions = &Error{"terminal_limit", "too many terminal sessions on this agent"}
	// ErrBadRequest: an [OpenRequest] or a resize with invalid values.
	ErrBadRequest = &Error{"terminal_bad_request", "invalid terminal request"}
	// ErrStart: the shell could not be started.
	ErrStart = &Error{"terminal_start_failed", "the terminal's shell could not be started"}
	// ErrClosed: the session (or the manager) was closed.
	ErrClosed = &Error{"terminal_closed", "terminal session closed"}
	// ErrIdleTimeout: the session saw neither input nor output for
	// [Config.IdleTimeout].
	ErrIdleTimeout = &Error{"terminal_idle_timeout", "terminal session idle for too long"}
	// ErrUnsupported: this operating system has no PTYs.
	ErrUnsupported = &Error{"terminal_unsupported", "terminal sessions are not supported on this operating system"}
)
