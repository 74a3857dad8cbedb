package events

import "github.com/home-console/client-manager/internal/fleet"

// Type is an event's wire name, e.g. "command.finished". Agent events keep
// the "client." prefix of the API for compatibility.
type Type string

// The event types, one per payload type below.
const (
	TypeAgentConnected    Type = "client.connected"
	TypeAgentDisconnected Type = "client.disconnected"
	TypeAgentEnrolled     Type = "client.enrolled"
	TypeAgentRevoked      Type = "client.revoked"
	TypeCommandQueued     Type = "command.queued"
	TypeCommandDispatched Type = "command.dispatched"
	TypeCommandRunning    Type = "command.running"
	TypeCommandOutput     Type = "command.output"
	TypeCommandFinished   Type = "command.finished"
)

// Types returns every event type.
func Types() []Type {
	return []Type{TypeAgentConnected, TypeAgentDisconnected, TypeAgentEnrolled, TypeAgentRevoked,
		TypeCommandQueued, TypeCommandDispatched, TypeCommandRunning, TypeCommandOutput, TypeCommandFinished}
}

// Payload is what happened: one of the event types of this package (the
// unexported methods close the set). Fields tagged json:"-" go to the
// event's "client_id" and "command_id"; the others form its "data".
type Payload interface {
	// Type returns the event's wire name.
	Type() Type
	// subject returns the agent and command the event concerns ("" for
	// none).
	subject() (agentID, commandID string)
	// data returns the wire "data" object, nil for a type without one.
	data() any
}

// The data fields of each type are declared in the order of their JSON
// names, so the wire form is byte for byte what it was with map payloads.

// AgentConnected: an agent completed hello (client.connected).
type AgentConnected struct {
	AgentID    string `json:"-"`
	Hostname   string `json:"hostname"`
	RemoteAddr string `json:"remote_addr"`
	Version    string `json:"version"`
}

// AgentDisconnected: an agent's connection that had completed hello
// ended (client.disconnected).
type AgentDisconnected struct {
	AgentID string `json:"-"`
	// Code and Reason are the WebSocket close code and reason.
	Code       int    `json:"code"`
	Reason     string `json:"reason"`
	RemoteAddr string `json:"remote_addr"`
}

// AgentEnrolled: a new agent enrolled with an enrollment token
// (client.enrolled).
type AgentEnrolled struct {
	AgentID string `json:"-"`
	Name    string `json:"name"`
	TokenID string `json:"token_id"`
}

// AgentRevoked: an agent's credential was revoked (client.revoked).
type AgentRevoked struct {
	AgentID string `json:"-"`
	// By is the principal who revoked it.
	By string `json:"by"`
}

// CommandQueued: a command for an offline agent was stored to be
// delivered when it connects (command.queued).
type CommandQueued struct {
	AgentID   string `json:"-"`
	CommandID string `json:"-"`
}

// CommandDispatched: a command was sent to its agent (command.dispatched).
type CommandDispatched struct {
	AgentID   string `json:"-"`
	CommandID string `json:"-"`
	// Attempt counts deliveries of this command, from 1.
	Attempt int `json:"attempt"`
}

// CommandRunning: the agent acknowledged a command (command.running).
type CommandRunning struct {
	AgentID   string `json:"-"`
	CommandID string `json:"-"`
}

// CommandOutput: a chunk of a running command's output (command.output).
type CommandOutput struct {
	AgentID   string `json:"-"`
	CommandID string `json:"-"`
	Data      string `json:"data"`
	// Seq orders the chunks of one command; Stream is "stdout" or
	// "stderr".
	Seq    int64  `json:"seq"`
	Stream string `json:"stream"`
}

// CommandFinished: a command reached a terminal state (command.finished).
type CommandFinished struct {
	AgentID   string `json:"-"`
	CommandID string `json:"-"`
	// Error says why the command failed, timed out, expired or was
	// cancelled ("" when there is no reason; always present on the wire).
	Error  string              `json:"error"`
	Status fleet.CommandStatus `json:"status"`
}

// Type implements Payload.
func (AgentConnected) Type() Type { return TypeAgentConnected }

// Type implements Payload.
func (AgentDisconnected) Type() Type { return TypeAgentDisconnected }

// Type implements Payload.
func (AgentEnrolled) Type() Type { return TypeAgentEnrolled }

// Type implements Payload.
func (AgentRevoked) Type() Type { return TypeAgentRevoked }

// Type implements Payload.
func (CommandQueued) Type() Type { return TypeCommandQueued }

// Type implements Payload.
func (CommandDispatched) Type() Type { return TypeCommandDispatched }

// Type implements Payload.
func (CommandRunning) Type() Type { return TypeCommandRunning }

// Type implements Payload.
func (CommandOutput) Type() Type { return TypeCommandOutput }

// Type implements Payload.
func (CommandFinished) Type() Type { return TypeCommandFinished }

func (p AgentConnected) subject() (string, string)    { return p.AgentID, "" }
func (p AgentDisconnected) subject() (string, string) { return p.AgentID, "" }
func (p AgentEnrolled) subject() (string, string)     { return p.AgentID, "" }
func (p AgentRevoked) subject() (string, string)      { return p.AgentID, "" }
func (p CommandQueued) subject() (string, string)     { return p.AgentID, p.CommandID }
func (p CommandDispatched) subject() (string, string) { return p.AgentID, p.CommandID }
func (p CommandRunning) subject() (string, string)    { return p.AgentID, p.CommandID }
func (p CommandOutput) subject() (string, string)     { return p.AgentID, p.CommandID }
func (p CommandFinished) subject() (string, string)   { return p.AgentID, p.CommandID }

func (p AgentConnected) data() any    { return p }
func (p AgentDisconnected) data() any { return p }
func (p AgentEnrolled) data() any     { return p }
func (p AgentRevoked) data() any      { return p }
func (CommandQueued) data() any       { return nil }
func (p CommandDispatched) data() any { return p }
func (CommandRunning) data() any      { return nil }
func (p CommandOutput) data() any     { return p }
func (p CommandFinished) data() any   { return p }
