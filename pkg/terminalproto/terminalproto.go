// Package terminalproto is the operator's side of a remote terminal: the
// WebSocket the client manager serves at GET /api/clients/{id}/terminal
// (and, read-only, at GET /api/sessions/{id}/watch), its subprotocol,
// control messages and close codes. docs/api.md describes the same in prose.
//
// Frames: binary frames carry raw terminal bytes — keystrokes from the
// operator, output to the operator (watchers' binary frames are ignored).
// Text frames carry one JSON [Message]. The server's first frame is a
// [TypeSession] message; its last, before closing with [CloseNormal], is a
// [TypeExit] message.
package terminalproto

// Subprotocol is the WebSocket subprotocol of this version. A client that
// offers subprotocols must offer it; one that offers none is served too.
const Subprotocol = "cm.terminal.v1"

// MessageType names a control message.
type MessageType string

// Control messages.
const (
	// TypeResize (operator → server): Cols and Rows.
	TypeResize MessageType = "resize"
	// TypeSignal (operator → server): Signal, e.g. "SIGINT" (see
	// agentproto.TerminalSignal for the list).
	TypeSignal MessageType = "signal"
	// TypeSession (server → operator, first): SessionID, AgentID, Mode,
	// Cols, Rows.
	TypeSession MessageType = "session"
	// TypeExit (server → operator, last): ExitCode (when the shell exited),
	// Reason.
	TypeExit MessageType = "exit"
)

// Modes of a connection.
const (
	// ModeControl: the session's owner; keystrokes, resize and signals go
	// to the terminal.
	ModeControl = "control"
	// ModeWatch: read-only; output only.
	ModeWatch = "watch"
)

// Message is one control message. Fields not used by a type are omitted.
type Message struct {
	Type      MessageType `json:"type"`
	SessionID string      `json:"session_id,omitempty"`
	AgentID   string      `json:"agent_id,omitempty"`
	Mode      string      `json:"mode,omitempty"`
	Cols      int         `json:"cols,omitempty"`
	Rows      int         `json:"rows,omitempty"`
	Signal    string      `json:"signal,omitempty"`
	ExitCode  *int        `json:"exit_code,omitempty"`
	Reason    string      `json:"reason,omitempty"`
}

// CloseCode is a WebSocket close code of the terminal endpoint; the close
// frame's reason says more.
type CloseCode int

// Close codes.
const (
	// CloseNormal: the session ended (the shell exited, or the operator
	// closed); a TypeExit message came first.
	CloseNormal CloseCode = 1000
	// CloseGoingAway: the client manager is stopping.
	CloseGoingAway CloseCode = 1001
	// CloseInvalidData: a text frame that is not a valid Message.
	CloseInvalidData CloseCode = 1007
	// ClosePolicy: a message not allowed here (e.g. resize from a watcher).
	ClosePolicy CloseCode = 1008
	// CloseTooBig: a frame over the endpoint's limit (64 KiB).
	CloseTooBig CloseCode = 1009
	// CloseInternal: a server error.
	CloseInternal CloseCode = 1011
	// CloseAgentGone: the agent's connection ended.
	CloseAgentGone CloseCode = 4010
	// CloseIdle: the agent ended the session after its idle timeout.
	CloseIdle CloseCode = 4011
	// CloseSlowWatcher: a watcher read too slowly and fell behind.
	CloseSlowWatcher CloseCode = 4012
	// CloseTerminated: an admin or a limit (recording cap does not) ended it.
	CloseTerminated CloseCode = 4013
)
