package agent

import "errors"

// Sentinel errors, for use with errors.Is.
var (
	// ErrRevoked is returned by [Agent.Run] when the server closed the
	// connection with agentproto.CloseRevoked: the credential is no longer
	// valid and the agent must not reconnect. Enroll again to continue.
	ErrRevoked = errors.New("agent credential revoked by the server")

	// ErrUnauthorized is returned by [Agent.Run] when the server refused
	// the WebSocket upgrade with HTTP 401 (unknown, malformed or revoked
	// credential), and matches a [*ServerError] from [Enroll] with status 401
	// (bad, used or expired enrollment token).
	ErrUnauthorized = errors.New("unauthorized")

	// ErrNotAllowed is the cause of a command's "rejected" result: its
	// executable is not in the agent's allow-list.
	ErrNotAllowed = errors.New("not in this agent's allow-list")

	// ErrJournalInUse is matched by the error of [Agent.Run] when another
	// agent, in this process or another, holds the lock of the journal at
	// [Config.JournalPath]: two agents must never share one journal. The
	// error's text names the lock file and the holder's pid.
	ErrJournalInUse = errors.New("journal in use by another agent")

	// ErrNoCredential is matched by the error of [LoadCredential] when the
	// credential file does not exist (which matches fs.ErrNotExist too).
	ErrNoCredential = errors.New("no agent credential stored")
)
