package fleet

import (
	"fmt"
	"time"
)

// Codes of interactive sessions (terminals and file transfers). The REST
// API shows them as they are (docs/api.md). Codes the agent refuses a
// stream with (pkg/agent/files, pkg/agent/terminal) are shown as the agent
// sent them; those the API maps to a status are listed here too.
const (
	// CodeTicketInvalid means a terminal ticket is unknown, used, expired
	// or for another agent.
	CodeTicketInvalid ErrorCode = "ticket_invalid"
	// CodeTerminalNotAllowed means the agent does not offer terminals.
	CodeTerminalNotAllowed ErrorCode = "terminal_not_allowed"
	// CodeFilesNotAllowed means the agent does not offer file access.
	CodeFilesNotAllowed ErrorCode = "files_not_allowed"
	// CodeTerminalLimit means the agent runs as many terminals as it may.
	CodeTerminalLimit ErrorCode = "terminal_limit"
	// CodeTransferLimit means as many transfers to or from the agent run
	// as are allowed (the server's limit or the agent's).
	CodeTransferLimit ErrorCode = "transfer_limit"
	// CodeSessionEnded means a terminal session is over (no watching).
	CodeSessionEnded ErrorCode = "session_ended"
	// CodeAgentDisconnected means the agent's connection ended during a
	// transfer or before a stream was answered.
	CodeAgentDisconnected ErrorCode = "agent_disconnected"
	// CodeLengthRequired means an upload has no Content-Length.
	CodeLengthRequired ErrorCode = "length_required"
	// CodeOffsetMismatch means an upload does not start where the agent's
	// pending upload ends (the answer says where).
	CodeOffsetMismatch ErrorCode = "offset_mismatch"
	// CodeRangeNotSatisfiable means a download's Range starts past the end.
	CodeRangeNotSatisfiable ErrorCode = "range_not_satisfiable"
	// CodeTransferTooLarge means a file is over the server's or the
	// agent's size limit.
	CodeTransferTooLarge ErrorCode = "transfer_too_large"
	// CodeDigestMismatch means an upload's content does not have the
	// expected SHA-256.
	CodeDigestMismatch ErrorCode = "digest_mismatch"
	// CodeInvalidSubprotocol means a terminal handshake offers
	// subprotocols but not cm.terminal.v1.
	CodeInvalidSubprotocol ErrorCode = "invalid_subprotocol"
	// CodeAgentError means the agent refused a stream with a code the
	// API does not know; the message carries the agent's code.
	CodeAgentError ErrorCode = "agent_error"
)

// Codes the agent's file access refuses with (pkg/agent/files), as the
// API shows them.
const (
	CodePathInvalid        ErrorCode = "path_invalid"
	CodePathOutsideRoots   ErrorCode = "path_outside_roots"
	CodeFileNotFound       ErrorCode = "file_not_found"
	CodePathIsDirectory    ErrorCode = "path_is_directory"
	CodePathNotDirectory   ErrorCode = "path_not_directory"
	CodeFileNotRegular     ErrorCode = "file_not_regular"
	CodeFileHardLink       ErrorCode = "file_hard_link"
	CodeFilePermission     ErrorCode = "file_permission_denied"
	CodeFileBusy           ErrorCode = "file_busy"
	CodeFileChanged        ErrorCode = "file_changed"
	CodeSizeMismatch       ErrorCode = "size_mismatch"
	CodeTransferBadRequest ErrorCode = "transfer_bad_request"
	CodeFileIOError        ErrorCode = "file_io_error"
)

// SessionState says whether a terminal session still runs.
type SessionState string

// Session states.
const (
	SessionActive SessionState = "active"
	SessionEnded  SessionState = "ended"
)

// TerminalSession is the record of one operator terminal on an agent.
type TerminalSession struct {
	ID      string `json:"id"`
	AgentID string `json:"agent_id"`
	// Operator and Role are the principal that opened it.
	Operator  string     `json:"operator"`
	Role      string     `json:"role"`
	StartedAt time.Time  `json:"started_at"`
	EndedAt   *time.Time `json:"ended_at"`
	// ExitCode is the shell's exit status, when it exited.
	ExitCode *int `json:"exit_code"`
	// EndReason says why the session ended ("exit", "operator closed",
	// "agent disconnected", …).
	EndReason string `json:"end_reason,omitempty"`
	Cols      int    `json:"cols"`
	Rows      int    `json:"rows"`
	Term      string `json:"term"`
	// BytesIn counts keystroke bytes sent to the agent, BytesOut output
	// bytes received from it.
	BytesIn  int64 `json:"bytes_in"`
	BytesOut int64 `json:"bytes_out"`
	// RecordingBytes is the size of its asciicast recording.
	RecordingBytes int64        `json:"recording_bytes"`
	State          SessionState `json:"state"`
}

// TerminalRequest asks for a terminal on an agent.
type TerminalRequest struct {
	AgentID    string
	Operator   string
	Role       string
	Cols, Rows int
	Term       string
}

// FileRequest names a file on an agent and, for an upload, what is sent.
type FileRequest struct {
	AgentID string
	Path    string
	// Offset is where a download starts or an upload resumes.
	Offset int64
	// Size is an upload's whole length; Mode its permission bits (0: keep).
	Size int64
	Mode uint32
	// SHA256 is an upload's expected digest (lower-case hex), if given.
	SHA256 string
}

// FileResult is the outcome of a transfer.
type FileResult struct {
	Path string `json:"path"`
	// Size is the file's whole size; Bytes how many bytes this request
	// carried.
	Size   int64  `json:"size"`
	Bytes  int64  `json:"-"`
	SHA256 string `json:"sha256"`
	Mode   uint32 `json:"mode"`
}

// OffsetMismatchError is an upload that does not continue the agent's
// pending one; Offset is where it must continue. Its code is
// CodeOffsetMismatch.
type OffsetMismatchError struct{ Offset int64 }

func (e *OffsetMismatchError) Error() string {
	return fmt.Sprintf("the upload must continue at offset %d (Content-Range: bytes %d-…)", e.Offset, e.Offset)
}

// Unwrap gives the error its code.
func (e *OffsetMismatchError) Unwrap() error {
	return &Error{Code: CodeOffsetMismatch, Message: e.Error()}
}

// DigestMismatchError is an upload whose content has another SHA-256
// than expected; Actual is the content's (empty when the agent did not
// say). Its code is CodeDigestMismatch.
type DigestMismatchError struct{ Actual string }

func (e *DigestMismatchError) Error() string {
	if e.Actual == "" {
		return "the content's sha-256 does not match X-Content-SHA256"
	}
	return "the content's sha-256 is " + e.Actual + ", not the one in X-Content-SHA256"
}

// Unwrap gives the error its code.
func (e *DigestMismatchError) Unwrap() error {
	return &Error{Code: CodeDigestMismatch, Message: e.Error()}
}

// RangeNotSatisfiableError is a download whose offset is at or past the
// end of the file (of Size bytes). Its code is CodeRangeNotSatisfiable.
type RangeNotSatisfiableError struct{ Offset, Size int64 }

func (e *RangeNotSatisfiableError) Error() string {
	return fmt.Sprintf("range starts at %d, past the end of the file (%d bytes)", e.Offset, e.Size)
}

// Unwrap gives the error its code.
func (e *RangeNotSatisfiableError) Unwrap() error {
	return &Error{Code: CodeRangeNotSatisfiable, Message: e.Error()}
}
