package fleet

import (
	"errors"
	"fmt"
)

// ErrorCode classifies an error for callers: a machine-readable word
// that adapters translate (the REST API into an HTTP status, from one
// table in internal/api) and show as the error code.
type ErrorCode string

// Codes of the domain's errors. The REST API shows them as they are, so
// they are part of its contract (docs/api.md).
const (
	// CodeInternal is any error that carries no code: a bug or a failure
	// of the store. Callers see only "internal error".
	CodeInternal ErrorCode = "internal"
	// CodeUnavailable means the request was cancelled or timed out, or a
	// dependency is not available; retrying later may succeed.
	CodeUnavailable ErrorCode = "unavailable"
	// CodeNotFound means the agent, command or token does not exist.
	CodeNotFound ErrorCode = "not_found"
	// CodeConflict means the write would break a uniqueness rule.
	CodeConflict ErrorCode = "conflict"
	// CodeAlreadyFinal means a command already reached a terminal state.
	CodeAlreadyFinal ErrorCode = "already_final"
	// CodeTokenInvalid means an enrollment token is unknown, expired or
	// used up.
	CodeTokenInvalid ErrorCode = "invalid_token"
	// CodeInvalidCommand means a command request is malformed (empty
	// command, too many or too large arguments, timeout or ttl out of
	// range).
	CodeInvalidCommand ErrorCode = "invalid_command"
	// CodeUnknownAgent means no agent has the requested id.
	CodeUnknownAgent ErrorCode = "unknown_client"
	// CodeAgentRevoked means the agent's credential was revoked.
	CodeAgentRevoked ErrorCode = "client_revoked"
	// CodeAgentOffline means the agent is not connected and the request
	// did not ask to queue the command.
	CodeAgentOffline ErrorCode = "client_offline"
	// CodeUnauthorized means the caller could not be authenticated.
	CodeUnauthorized ErrorCode = "unauthorized"
	// CodeForbidden means the caller's role does not allow the action.
	CodeForbidden ErrorCode = "forbidden"
	// CodeStorageUnavailable means the store refuses writes (its disk is
	// full or failing); nothing was changed, and retrying once the
	// store recovers succeeds.
	CodeStorageUnavailable ErrorCode = "storage_unavailable"
)

// Error is an error with a code. Two Errors match with errors.Is when
// their codes are equal, so a store may return a more precise message
// (Errorf(CodeNotFound, "agent %s not found", id)) that still matches
// ErrNotFound.
type Error struct {
	Code ErrorCode
	// Message is for humans; it never carries a secret.
	Message string
	// Cause is the lower-level error behind this one, if any (a store's
	// driver error); Unwrap returns it.
	Cause error
}

// Error implements error: it returns the message.
func (e *Error) Error() string { return e.Message }

// Unwrap returns the cause, or nil.
func (e *Error) Unwrap() error { return e.Cause }

// Is reports whether target is an *Error with e's code.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// Errorf returns an *Error with code and a formatted message.
func Errorf(code ErrorCode, format string, args ...any) error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// CodeOf returns the code of the first *Error in err's chain: "" for nil,
// CodeInternal for an error without one.
func CodeOf(err error) ErrorCode {
	var e *Error
	switch {
	case err == nil:
		return ""
	case errors.As(err, &e):
		return e.Code
	}
	return CodeInternal
}

// MessageOf returns the message of the first *Error in err's chain (the
// reason a store gives, without the callers' wrapping), or err's text
// if it has none; "" for nil.
func MessageOf(err error) string {
	var e *Error
	switch {
	case err == nil:
		return ""
	case errors.As(err, &e):
		return e.Message
	}
	return err.Error()
}

// Errors the domain returns, checked with errors.Is.
var (
	// ErrNotFound means the agent, command or token does not exist.
	ErrNotFound error = &Error{Code: CodeNotFound, Message: "not found"}
	// ErrConflict means the write would break a uniqueness rule.
	ErrConflict error = &Error{Code: CodeConflict, Message: "conflict"}
	// ErrTokenInvalid means an enrollment token is unknown, expired or
	// used up.
	ErrTokenInvalid error = &Error{Code: CodeTokenInvalid, Message: "enrollment token invalid, expired or used up"}
	// ErrAlreadyFinal means a command already reached a terminal state;
	// the attempted transition was not applied.
	ErrAlreadyFinal error = &Error{Code: CodeAlreadyFinal, Message: "command already in a terminal state"}
	// ErrInvalidCommand means a command request is malformed; the
	// returned error wraps it with the reason.
	ErrInvalidCommand error = &Error{Code: CodeInvalidCommand, Message: "invalid command request"}
	// ErrUnknownAgent means no agent has the requested id.
	ErrUnknownAgent error = &Error{Code: CodeUnknownAgent, Message: "unknown agent"}
	// ErrAgentRevoked means the agent's credential was revoked.
	ErrAgentRevoked error = &Error{Code: CodeAgentRevoked, Message: "agent revoked"}
	// ErrAgentOffline means the agent is not connected and the request did
	// not ask to queue the command.
	ErrAgentOffline error = &Error{Code: CodeAgentOffline, Message: "agent offline"}
	// ErrStorageUnavailable means the store refuses writes (disk full,
	// I/O error); a store returns an *Error of its code whose message
	// says why and whose Cause is the driver's error.
	ErrStorageUnavailable error = &Error{Code: CodeStorageUnavailable, Message: "storage unavailable"}
)
