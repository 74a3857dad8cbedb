package fleet

import (
	"context"
	"time"
)

// Store is the durable state of the client manager. Implementations are
// safe for concurrent use; every method is one transaction.
type Store interface {
	AgentStore
	TokenStore
	CommandStore
	AuditStore
	OperatorTokenStore
	// Close releases the store.
	Close() error
}

// AgentStore keeps enrolled agents and their credential hashes.
type AgentStore interface {
	// CreateAgent stores a new agent with the hash of its secret.
	// a.Labels are its enrollment labels: authoritative, kept by every
	// later TouchAgent.
	CreateAgent(ctx context.Context, a Agent, secretHash []byte) error
	// EnrollAgent spends a use of an enrollment token, stores the new
	// agent and appends the enrollment's audit entry, all in one
	// transaction: ErrTokenInvalid or any other error writes nothing.
	EnrollAgent(ctx context.Context, e Enrollment) (EnrollmentToken, error)
	// Agent returns one agent, or ErrNotFound.
	Agent(ctx context.Context, id string) (Agent, error)
	// AgentSecretHash returns the stored hash of the agent's secret and
	// whether it is revoked, or ErrNotFound.
	AgentSecretHash(ctx context.Context, id string) (hash []byte, revoked bool, err error)
	// TouchAgent records a connection: facts, address and time. The
	// agent's labels become facts.Labels with its enrollment labels over
	// them, so a hello adds labels but never removes or changes one given
	// at enrollment.
	TouchAgent(ctx context.Context, id string, facts AgentFacts, addr string, at time.Time) error
	// SeenAgent updates only the last-seen time (disconnects).
	SeenAgent(ctx context.Context, id string, at time.Time) error
	// SeenAgents updates the last-seen times of many agents (batched
	// heartbeats) in one transaction. Unknown ids are ignored, and a
	// stored time is never moved backwards.
	SeenAgents(ctx context.Context, at map[string]time.Time) error
	// ListAgents returns the page selected by f and the total matching.
	// A store may return fewer than f.Limit agents (internal/sqlite at
	// most 1000); callers wanting all of them page on by the number
	// returned.
	ListAgents(ctx context.Context, f AgentFilter) ([]Agent, int, error)
	// RevokeAgent marks the agent revoked, or ErrNotFound.
	RevokeAgent(ctx context.Context, id string, at time.Time) error
}

// TokenStore keeps enrollment tokens.
type TokenStore interface {
	// CreateEnrollmentToken stores t (ID and Hash set by the caller).
	CreateEnrollmentToken(ctx context.Context, t EnrollmentToken) error
	// ListEnrollmentTokens returns all tokens, newest first.
	ListEnrollmentTokens(ctx context.Context) ([]EnrollmentToken, error)
	// DeleteEnrollmentToken removes a token, or ErrNotFound.
	DeleteEnrollmentToken(ctx context.Context, id string) error
}

// CommandStore keeps commands. A command reaches exactly one terminal
// state: transitions out of a terminal state return ErrAlreadyFinal.
type CommandStore interface {
	// CreateCommand stores a new command (ID set by the caller).
	CreateCommand(ctx context.Context, c Command) error
	// Command returns one command, or ErrNotFound.
	Command(ctx context.Context, id string) (Command, error)
	// MarkDispatched moves a live command to dispatched and counts an
	// attempt.
	MarkDispatched(ctx context.Context, id string, at time.Time) error
	// MarkRunning moves a live command to running.
	MarkRunning(ctx context.Context, id string) error
	// RequestCancel records that by asked at at to cancel a live command,
	// keeping the first request; a terminal command is ErrAlreadyFinal.
	RequestCancel(ctx context.Context, id, by string, at time.Time) error
	// FinishCommand applies a terminal result once; later calls return
	// ErrAlreadyFinal and change nothing.
	FinishCommand(ctx context.Context, id string, r CommandResult) error
	// ListCommands returns the page selected by f (newest first) and the
	// total matching.
	ListCommands(ctx context.Context, f CommandFilter) ([]Command, int, error)
	// LiveCommands returns an agent's non-terminal commands, oldest first
	// (for delivery on connect). An empty agentID means every agent.
	LiveCommands(ctx context.Context, agentID string) ([]Command, error)
	// ExpireCommands finishes queued commands whose ExpiresAt is before now
	// as expired, and returns them.
	ExpireCommands(ctx context.Context, now time.Time) ([]Command, error)
	// PruneCommands deletes terminal commands finished before cutoff.
	PruneCommands(ctx context.Context, cutoff time.Time) (int, error)
}

// AuditStore appends to and reads the audit log. An entry is appended
// before the action it describes (with Result AuditPending) and finished
// with the outcome after, so an action whose entry cannot be written is
// not carried out.
type AuditStore interface {
	// AppendAudit appends e and returns the id the store gave it.
	AppendAudit(ctx context.Context, e AuditEntry) (int64, error)
	// FinishAudit sets the result and detail of entry id, or ErrNotFound.
	FinishAudit(ctx context.Context, id int64, result, detail string) error
	ListAudit(ctx context.Context, f AuditFilter) ([]AuditEntry, int, error)
}

// OperatorTokenStore keeps operator API tokens.
type OperatorTokenStore interface {
	// CreateOperatorToken stores t (ID and Hash set by the caller).
	CreateOperatorToken(ctx context.Context, t OperatorToken) error
	// OperatorTokenByHash returns the token whose hash is hash, revoked or
	// expired ones included, or ErrNotFound.
	OperatorTokenByHash(ctx context.Context, hash []byte) (OperatorToken, error)
	// ListOperatorTokens returns all tokens, newest first.
	ListOperatorTokens(ctx context.Context) ([]OperatorToken, error)
	// RevokeOperatorToken marks a token revoked, or returns ErrNotFound.
	RevokeOperatorToken(ctx context.Context, id string, at time.Time) error
	// CountActiveOperatorTokens counts tokens neither revoked nor expired
	// at now.
	CountActiveOperatorTokens(ctx context.Context, now time.Time) (int, error)
}
