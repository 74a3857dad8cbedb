// Package agentproto defines the wire protocol between remote agents and the
// client manager: the enrollment request, the WebSocket subprotocol, the JSON
// envelope, every message type and its data, and the close codes. Both the
// server (internal/hub) and the agent SDK (pkg/agent) import it; docs/protocol.md
// describes the same protocol in prose.
//
// Transport: one WebSocket per agent at GET /ws, subprotocol [Subprotocol],
// authenticated on the HTTP upgrade with "Authorization: Bearer <credential>"
// (HTTP 401 before the upgrade otherwise). Frames are JSON text frames, one
// [Envelope] each, at most the server's max message size (default 1 MiB).
package agentproto

import (
	"encoding/json"
	"errors"
	"strings"
	"time"
)

// Subprotocol is the negotiated WebSocket subprotocol of this version.
const Subprotocol = "cm.agent.v1"

// Paths served by the client manager for agents.
const (
	// PathWebSocket is the agent WebSocket endpoint.
	PathWebSocket = "/ws"
	// PathEnroll exchanges an enrollment token for an agent identity
	// (POST, [EnrollRequest] in, [EnrollResponse] out, 201).
	PathEnroll = "/api/enroll"
)

// Envelope is every frame in both directions.
type Envelope struct {
	// Type names the message; see the Type* constants.
	Type string `json:"type"`
	// ID is an optional message id, echoed in replies (error.ref).
	ID string `json:"id,omitempty"`
	// Data is the type-specific payload.
	Data json.RawMessage `json:"data,omitempty"`
}

// Message types sent by the agent.
const (
	// TypeHello must be the agent's first message, within the hello timeout.
	TypeHello = "hello"
	// TypeHeartbeat keeps the connection alive; send one every
	// Welcome.HeartbeatInterval.
	TypeHeartbeat = "heartbeat"
	// TypeCommandAccepted acknowledges delivery of a command_request.
	TypeCommandAccepted = "command_accepted"
	// TypeCommandOutput streams a chunk of a running command's output.
	TypeCommandOutput = "command_output"
	// TypeCommandResult reports a command's terminal state. The agent
	// re-sends it (after reconnecting if needed) until it gets result_ack.
	TypeCommandResult = "command_result"
)

// Message types sent by the server.
const (
	// TypeWelcome answers hello.
	TypeWelcome = "welcome"
	// TypeHeartbeatAck answers heartbeat.
	TypeHeartbeatAck = "heartbeat_ack"
	// TypeCommandRequest asks the agent to run a command. Delivery is
	// at-least-once: the agent de-duplicates by CommandID.
	TypeCommandRequest = "command_request"
	// TypeCommandCancel asks the agent to stop a running command.
	TypeCommandCancel = "command_cancel"
	// TypeResultAck confirms the server stored a command_result.
	TypeResultAck = "result_ack"
)

// TypeError is sent by either side to report a bad message that did not
// warrant closing the connection.
const TypeError = "error"

// Hello is the agent's self-description. Facts are informational; identity
// comes from the credential, never from Hello.
type Hello struct {
	Hostname string            `json:"hostname"`
	OS       string            `json:"os"`
	Arch     string            `json:"arch"`
	Version  string            `json:"version"`
	Labels   map[string]string `json:"labels,omitempty"`
	// Allowed lists the executables the agent's allow-list permits.
	Allowed []string `json:"allowed,omitempty"`
	// Running lists command ids the agent is still executing (after a
	// reconnect), so the server does not re-deliver them.
	Running []string `json:"running,omitempty"`
	// Features lists what the agent supports and allows (Feature*).
	Features []string `json:"features,omitempty"`
}

// Welcome is the server's answer to Hello.
type Welcome struct {
	AgentID string `json:"agent_id"`
	// HeartbeatIntervalMS is how often the agent must send heartbeat.
	HeartbeatIntervalMS int64 `json:"heartbeat_interval_ms"`
	// LivenessTimeoutMS: a connection silent this long is closed (4003).
	LivenessTimeoutMS int64 `json:"liveness_timeout_ms"`
	// MaxMessageBytes is the largest frame the server reads.
	MaxMessageBytes int64 `json:"max_message_bytes"`
	// MaxOutputBytes is the most output the server keeps per command;
	// the agent truncates beyond it and sets Truncated.
	MaxOutputBytes int64  `json:"max_output_bytes"`
	ServerVersion  string `json:"server_version"`
	// Features lists what the server supports (Feature*); absent from
	// servers that predate it.
	Features []string `json:"features,omitempty"`
	// StreamWindowBytes is each stream's credit window per direction,
	// StreamChunkBytes the largest payload of one binary frame; both set
	// when Features has FeatureStreams.
	StreamWindowBytes int64 `json:"stream_window_bytes,omitempty"`
	StreamChunkBytes  int64 `json:"stream_chunk_bytes,omitempty"`
}

// Heartbeat carries the agent's clock, for drift diagnostics.
type Heartbeat struct {
	Time time.Time `json:"time"`
}

// CommandRequest asks the agent to run Command with Args (argv, no shell).
type CommandRequest struct {
	CommandID string   `json:"command_id"`
	Command   string   `json:"command"`
	Args      []string `json:"args,omitempty"`
	// TimeoutMS bounds the run; the agent kills the process group after it.
	TimeoutMS int64 `json:"timeout_ms"`
}

// CommandRef names a command: the data of command_accepted,
// command_cancel and result_ack.
type CommandRef struct {
	CommandID string `json:"command_id"`
}

// Output streams.
const (
	StreamStdout = "stdout"
	StreamStderr = "stderr"
)

// CommandOutput is a chunk of output, in order per command (Seq from 0).
type CommandOutput struct {
	CommandID string `json:"command_id"`
	Stream    string `json:"stream"`
	Seq       int64  `json:"seq"`
	Data      string `json:"data"`
}

// Result statuses an agent reports.
const (
	ResultCompleted = "completed" // ran and exited 0
	ResultFailed    = "failed"    // exited non-zero, or could not start
	ResultCancelled = "cancelled" // stopped by command_cancel
	ResultTimedOut  = "timed_out" // killed at its timeout
	ResultRejected  = "rejected"  // not allowed by the agent's allow-list
)

// CommandResult is a command's terminal report.
type CommandResult struct {
	CommandID string `json:"command_id"`
	Status    string `json:"status"`
	// ExitCode is the process exit code; -1 if it did not exit normally.
	ExitCode int    `json:"exit_code"`
	Stdout   string `json:"stdout"`
	Stderr   string `json:"stderr"`
	// Truncated is set when output beyond MaxOutputBytes was dropped.
	Truncated  bool      `json:"truncated"`
	Error      string    `json:"error,omitempty"`
	StartedAt  time.Time `json:"started_at"`
	FinishedAt time.Time `json:"finished_at"`
}

// Error reports a problem with a message (Ref is the offending Envelope.ID).
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Ref     string `json:"ref,omitempty"`
}

// Close codes the server uses, with a reason text in the close frame.
const (
	CloseNormal        = 1000 // normal closure
	CloseGoingAway     = 1001 // server draining or shutting down; reconnect
	CloseUnsupported   = 1003 // a binary frame before both sides listed FeatureStreams
	CloseInvalidData   = 1007 // a frame that is not a JSON envelope
	ClosePolicy        = 1008 // protocol violation (e.g. no hello)
	CloseTooBig        = 1009 // a frame over the max message size
	CloseInternal      = 1011 // server error
	CloseTryAgainLater = 1013 // server over its connection limit; back off
	CloseReplaced      = 4001 // a newer connection for the same agent
	CloseRevoked       = 4002 // the agent's credential was revoked; do not reconnect
	CloseLiveness      = 4003 // no heartbeat within the liveness timeout
	CloseSlowConsumer  = 4004 // outbound queue full: the agent reads too slowly
	CloseRateLimited   = 4005 // too many messages per second
	CloseDeleted       = 4006 // an operator disconnected the agent
)

// EnrollRequest exchanges an enrollment token for an identity.
type EnrollRequest struct {
	Token    string            `json:"token"`
	Name     string            `json:"name,omitempty"`
	Hostname string            `json:"hostname,omitempty"`
	OS       string            `json:"os,omitempty"`
	Arch     string            `json:"arch,omitempty"`
	Version  string            `json:"version,omitempty"`
	Labels   map[string]string `json:"labels,omitempty"`
}

// EnrollResponse carries the agent's permanent identity. The credential is
// shown once; the server keeps only its hash.
type EnrollResponse struct {
	AgentID    string `json:"agent_id"`
	Credential string `json:"credential"`
}

// ErrMalformedCredential is returned by ParseCredential.
var ErrMalformedCredential = errors.New("malformed agent credential")

// FormatCredential joins an agent id and its secret into a credential.
func FormatCredential(agentID, secret string) string {
	return agentID + "." + secret
}

// ParseCredential splits a credential into agent id and secret.
func ParseCredential(cred string) (agentID, secret string, err error) {
	id, sec, ok := strings.Cut(cred, ".")
	if !ok || id == "" || sec == "" {
		return "", "", ErrMalformedCredential
	}
	return id, sec, nil
}
