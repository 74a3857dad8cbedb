// Package fleet holds the client manager's domain: agents, their
// credentials, enrollment tokens, commands and the audit trail, and the
// Store interface the adapters (internal/sqlite) implement. It imports no
// adapter; everything else depends on it.
package fleet

import "time"

// Agent is an enrolled remote machine.
type Agent struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	Hostname string `json:"hostname"`
	OS       string `json:"os"`
	Arch     string `json:"arch"`
	Version  string `json:"version"`
	// Labels are the labels given at enrollment, which are authoritative,
	// plus those of the agent's last hello whose keys enrollment did not
	// set (see AgentFacts).
	Labels map[string]string `json:"labels"`
	// Allowed is the allow-list the agent reported in its last hello.
	Allowed   []string  `json:"allowed"`
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
	LastAddr  string    `json:"last_addr"`
	Revoked   bool      `json:"revoked"`
	// RevokedAt is zero unless Revoked.
	RevokedAt time.Time `json:"revoked_at,omitzero"`
}

// AgentFacts is what an agent reports about itself on each connection
// (its hello).
type AgentFacts struct {
	Hostname string
	OS       string
	Arch     string
	Version  string
	// Labels may add to the agent's enrollment labels but never remove or
	// change one: a key the operator set at enrollment keeps its
	// enrollment value. Labels of an earlier hello that this one does not
	// repeat are dropped.
	Labels  map[string]string
	Allowed []string
}

// AgentFilter selects agents. Zero fields match everything.
type AgentFilter struct {
	// IDs restricts to these ids.
	IDs []string
	// Labels must all match (key=value).
	Labels map[string]string
	// Text matches a substring of id, name or hostname (case-insensitive).
	Text string
	// IncludeRevoked includes revoked agents.
	IncludeRevoked bool
	Limit, Offset  int
}

// EnrollmentToken lets a new agent enroll. Only its hash is stored.
type EnrollmentToken struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Hash      []byte    `json:"-"`
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	UsesLeft  int       `json:"uses_left"`
	CreatedAt time.Time `json:"created_at"`
	CreatedBy string    `json:"created_by"`
}

// CommandStatus is where a command is in its life.
type CommandStatus string

// Command statuses. Queued, Pending, Dispatched and Running are live; the
// others are terminal and final: a command reaches exactly one of them.
const (
	// StatusQueued: accepted for an offline agent; delivered on reconnect
	// unless it expires first.
	StatusQueued CommandStatus = "queued"
	// StatusPending: accepted, the agent is online, not yet acknowledged.
	StatusPending CommandStatus = "pending"
	// StatusDispatched: sent to the agent, not yet acknowledged.
	StatusDispatched CommandStatus = "dispatched"
	// StatusRunning: the agent acknowledged it.
	StatusRunning   CommandStatus = "running"
	StatusCompleted CommandStatus = "completed"
	StatusFailed    CommandStatus = "failed"
	StatusCancelled CommandStatus = "cancelled"
	StatusTimedOut  CommandStatus = "timed_out"
	StatusExpired   CommandStatus = "expired"
)

// CommandStatuses returns every command status, the live ones first.
func CommandStatuses() []CommandStatus {
	return []CommandStatus{StatusQueued, StatusPending, StatusDispatched, StatusRunning,
		StatusCompleted, StatusFailed, StatusCancelled, StatusTimedOut, StatusExpired}
}

// Terminal reports whether s is a final state.
func (s CommandStatus) Terminal() bool {
	switch s {
	case StatusCompleted, StatusFailed, StatusCancelled, StatusTimedOut, StatusExpired:
		return true
	}
	return false
}

// Command is a request to run argv on one agent, and its outcome.
type Command struct {
	ID      string        `json:"id"`
	AgentID string        `json:"client_id"`
	Command string        `json:"command"`
	Args    []string      `json:"args"`
	Timeout time.Duration `json:"-"`
	Status  CommandStatus `json:"status"`
	// RequestedBy names the operator (token name, or "loopback").
	RequestedBy string `json:"requested_by"`
	// BatchID groups commands sent to many agents at once ("" if none).
	BatchID string `json:"batch_id,omitempty"`
	// ExpiresAt bounds a queued command's wait for its agent.
	ExpiresAt    time.Time `json:"expires_at,omitzero"`
	CreatedAt    time.Time `json:"created_at"`
	DispatchedAt time.Time `json:"dispatched_at,omitzero"`
	FinishedAt   time.Time `json:"finished_at,omitzero"`
	// Attempts counts deliveries to the agent.
	Attempts  int    `json:"attempts"`
	ExitCode  *int   `json:"exit_code"`
	Stdout    string `json:"stdout"`
	Stderr    string `json:"stderr"`
	Truncated bool   `json:"truncated"`
	// Error is the reason for a non-completed terminal state.
	Error string `json:"error,omitempty"`
	// CancelRequestedAt is when an operator first asked to cancel the
	// command (zero if nobody did), and CancelRequestedBy who.
	CancelRequestedAt time.Time `json:"cancel_requested_at,omitzero"`
	CancelRequestedBy string    `json:"cancel_requested_by,omitempty"`
}

// CommandRequest asks for Command with Args (argv, no shell) to run on
// the agent AgentID.
type CommandRequest struct {
	AgentID string
	Command string
	Args    []string
	// Timeout bounds the run on the agent (0: the dispatcher's default).
	Timeout time.Duration
	// QueueIfOffline queues the command for an offline agent instead of
	// failing with ErrAgentOffline; it expires after TTL (0: the
	// dispatcher's default) unless the agent connects first.
	QueueIfOffline bool
	TTL            time.Duration
	// RequestedBy names the operator (token name, or "loopback").
	RequestedBy string
	// BatchID groups the commands of one batch ("" if none).
	BatchID string
}

// CommandResult is a terminal outcome applied with Store.FinishCommand.
type CommandResult struct {
	Status    CommandStatus
	ExitCode  *int
	Stdout    string
	Stderr    string
	Truncated bool
	Error     string
	At        time.Time
}

// CommandFilter selects commands. Zero fields match everything.
type CommandFilter struct {
	AgentID     string
	Status      []CommandStatus
	BatchID     string
	RequestedBy string
	Since       time.Time
	Limit       int
	Offset      int
}

// AuditEntry records who did what.
type AuditEntry struct {
	ID     int64     `json:"id"`
	Time   time.Time `json:"time"`
	Actor  string    `json:"actor"`
	Role   string    `json:"role"`
	Source string    `json:"source"`
	Action string    `json:"action"`
	Target string    `json:"target"`
	Result string    `json:"result"`
	Detail string    `json:"detail,omitempty"`
}

// AuditPending is the Result of an audit entry whose action is under
// way (or whose outcome could not be recorded yet).
const AuditPending = "pending"

// Enrollment is what enrolling one agent writes, in one transaction: a
// use of the enrollment token whose hash is TokenHash (valid at At), the
// new Agent with the hash of its secret, and the audit entry Audit
// returns for the token spent.
type Enrollment struct {
	TokenHash  []byte
	At         time.Time
	Agent      Agent
	SecretHash []byte
	Audit      func(EnrollmentToken) AuditEntry
}

// AuditFilter selects audit entries.
type AuditFilter struct {
	Actor  string
	Action string
	Target string
	Since  time.Time
	Limit  int
	Offset int
}

// OperatorToken lets an operator call the REST API with a role. Only its
// hash is stored; the token itself is shown once, when created.
type OperatorToken struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Role      string    `json:"role"`
	Hash      []byte    `json:"-"`
	CreatedAt time.Time `json:"created_at"`
	CreatedBy string    `json:"created_by"`
	// ExpiresAt is zero for a token that never expires.
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	// RevokedAt is zero unless the token was revoked.
	RevokedAt time.Time `json:"revoked_at,omitzero"`
}

// Active reports whether the token is usable at now.
func (t OperatorToken) Active(now time.Time) bool {
	return t.RevokedAt.IsZero() && (t.ExpiresAt.IsZero() || now.Before(t.ExpiresAt))
}
