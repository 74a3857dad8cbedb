// Package api serves the client manager's operator REST API under /api:
// agents, commands, enrollment tokens and the live event stream. Every
// error is JSON {"error":{"code","message"}}.
package api

import (
	"cmp"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/home-console/client-manager/internal/access"
	"github.com/home-console/client-manager/internal/events"
	"github.com/home-console/client-manager/internal/fleet"
	"github.com/home-console/client-manager/internal/origin"
	"github.com/home-console/client-manager/internal/ratelimit"
	"github.com/home-console/client-manager/internal/strictjson"
)

// Presence tells which agents are connected and disconnects them. Its
// methods are safe for concurrent use and do not block.
type Presence interface {
	// ConnectedSince reports whether the agent is online and since when.
	ConnectedSince(agentID string) (time.Time, bool)
	// Disconnect closes the agent's connection with a WebSocket close
	// code (agentproto.Close*) and reason, and reports whether one was
	// open.
	Disconnect(agentID string, code int, reason string) bool
}

// Commands submits, waits for and cancels commands (*dispatch.Service
// implements it). Its errors are fleet's: Submit returns errors matching
// fleet.ErrInvalidCommand, fleet.ErrUnknownAgent, fleet.ErrAgentRevoked or
// fleet.ErrAgentOffline; Wait and Cancel fleet.ErrNotFound for an unknown
// command, and Cancel fleet.ErrAlreadyFinal for a finished one.
type Commands interface {
	// Submit stores the command and delivers it if its agent is online.
	Submit(ctx context.Context, r fleet.CommandRequest) (fleet.Command, error)
	// Wait blocks until the command is terminal or ctx ends, and returns
	// its state then (an ended ctx is not an error).
	Wait(ctx context.Context, id string) (fleet.Command, error)
	// Cancel asks for the command to stop and returns its state after.
	Cancel(ctx context.Context, id, by string) (fleet.Command, error)
}

// Enrollment creates enrollment tokens and revokes agents.
type Enrollment interface {
	// CreateToken returns a new enrollment token (shown this once) and
	// its stored record.
	CreateToken(ctx context.Context, name string, uses int, ttl time.Duration, createdBy string) (string, fleet.EnrollmentToken, error)
	// Revoke marks an agent's credential revoked; it does not disconnect.
	Revoke(ctx context.Context, agentID, by string) error
}

// OperatorTokens authenticates and creates operator tokens.
type OperatorTokens interface {
	access.Tokens
	// Create returns a new operator token (shown this once) and its
	// stored record.
	Create(ctx context.Context, name string, role access.Role, ttl time.Duration, createdBy string) (string, fleet.OperatorToken, error)
}

// Server holds the API's dependencies. All fields but Origins and the
// Stream ones are required.
type Server struct {
	Store      fleet.Store
	Presence   Presence
	Commands   Commands
	Enrollment Enrollment
	Bus        *events.Bus
	Tokens     OperatorTokens
	// Policy says which roles may run which commands.
	Policy access.CommandPolicy
	Log    *slog.Logger
	// MaxBodyBytes bounds request bodies (413 beyond).
	MaxBodyBytes int64
	// BodyTimeout bounds how long reading a request body may take (408
	// beyond); 0 means 10s.
	BodyTimeout time.Duration
	// Limiter is the per-caller rate limit (429 beyond).
	Limiter *ratelimit.Limiter
	// Origins lists the browser origins allowed besides same-origin ones
	// (403 for others); the zero value allows none.
	Origins origin.Policy

	// audit holds audit outcomes the store refused (see RetryAudit).
	audit auditBacklog
	// StreamQueue bounds the events waiting for one GET /api/events
	// consumer, and StreamWriteTimeout each write to it; a consumer past
	// either is dropped (defaults DefaultStreamQueue and
	// DefaultStreamWriteTimeout).
	StreamQueue        int
	StreamWriteTimeout time.Duration
	// StreamDropped, if not nil, is called for every dropped stream.
	StreamDropped func(StreamDrop)

	// Terminals and Files, if set, serve the terminal and file routes,
	// to callers of at least TerminalRole and FilesRole (default admin).
	Terminals    Terminals
	Files        Files
	TerminalRole access.Role
	FilesRole    access.Role
}

// Register adds the API's routes to r.
func (s *Server) Register(r gin.IRouter) {
	g := r.Group("/api", s.audited, s.authenticate, s.checkOrigin)
	view := g.Group("", s.require(access.RoleViewer), s.beginAudit, s.checkQuery)
	op := g.Group("", s.require(access.RoleOperator), s.beginAudit, s.checkQuery)
	admin := g.Group("", s.require(access.RoleAdmin), s.beginAudit, s.checkQuery)

	view.GET("/clients", s.listAgents)
	view.GET("/clients/:id", s.getAgent)
	admin.DELETE("/clients/:id", s.deleteAgent)

	view.GET("/commands", s.listCommands)
	view.GET("/commands/:id", s.getCommand)
	op.POST("/commands", s.batchCommand)
	op.POST("/commands/:id", s.runCommand)
	op.POST("/commands/:id/async", s.runCommandAsync)
	op.POST("/commands/:id/cancel", s.cancelCommand)

	admin.GET("/enrollment-tokens", s.listEnrollmentTokens)
	admin.POST("/enrollment-tokens", s.createEnrollmentToken)
	admin.DELETE("/enrollment-tokens/:id", s.deleteEnrollmentToken)

	admin.GET("/tokens", s.listOperatorTokens)
	admin.POST("/tokens", s.createOperatorToken)
	admin.DELETE("/tokens/:id", s.revokeOperatorToken)
	admin.GET("/audit", s.listAudit)

	view.GET("/events", s.streamEvents)
	s.registerSessions(r)
}

// Protect returns the handlers that guard a route outside /api as the
// API guards its own: authentication with the per-caller rate limit, the
// browser origin rule, and at least role min.
func (s *Server) Protect(min access.Role) gin.HandlersChain {
	return gin.HandlersChain{s.authenticate, s.checkOrigin, s.require(min)}
}

// decodeJSON strictly decodes the request body into v (see decodeStrict),
// bounded by MaxBodyBytes and BodyTimeout. It writes the error response
// and returns false on failure.
func (s *Server) decodeJSON(c *gin.Context, v any) bool {
	// A body that trickles in slower than this is a slow client (or an
	// attack holding a connection): 408, not a parse error.
	timeout := cmp.Or(s.BodyTimeout, defaultBodyTimeout)
	_ = http.NewResponseController(c.Writer).SetReadDeadline(time.Now().Add(timeout))
	err := decodeStrict(http.MaxBytesReader(c.Writer, c.Request.Body, s.MaxBodyBytes), v)
	if err == nil {
		_ = http.NewResponseController(c.Writer).SetReadDeadline(time.Time{})
		return true
	}
	// The deadline stays: net/http discards what is left of the body
	// after the answer, and must not wait for it forever.
	var tooBig *http.MaxBytesError
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		c.Header("Connection", "close")
		s.failf(c, codeRequestTimeout, "request body not received within %s", timeout)
	case errors.As(err, &tooBig):
		s.failf(c, codeBodyTooLarge, "request body exceeds %d bytes", tooBig.Limit)
	case errors.Is(err, strictjson.ErrEmpty):
		s.failf(c, codeInvalidJSON, "request body is empty; a JSON object is required")
	default:
		s.failf(c, codeInvalidJSON, "request body: %v", err)
	}
	return false
}

// decodeStrict reads r to its end and decodes it into v with
// strictjson.Decode: one JSON value of v's fields, each key once and
// spelled exactly, valid UTF-8, numbers in range, nothing after it. An
// empty body is strictjson.ErrEmpty; read errors (such as
// *http.MaxBytesError) are returned as they are.
func decodeStrict(r io.Reader, v any) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	return strictjson.Decode(data, v)
}

// Paging of every list route: limit defaults to defaultLimit and may be
// 1..maxLimit; offset defaults to 0.
const (
	defaultLimit = 100
	maxLimit     = 1000
)

// page reads the limit and offset query parameters. It writes the error
// response and returns false when one is invalid.
func (s *Server) page(c *gin.Context) (limit, offset int, ok bool) {
	limit, offset = defaultLimit, 0
	if v := c.Query("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxLimit {
			s.failf(c, codeInvalidQuery, "limit must be an integer from 1 to %d", maxLimit)
			return 0, 0, false
		}
		limit = n
	}
	if v := c.Query("offset"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			s.failf(c, codeInvalidQuery, "offset must be a non-negative integer")
			return 0, 0, false
		}
		offset = n
	}
	return limit, offset, true
}

// defaultBodyTimeout is Server.BodyTimeout's default.
const defaultBodyTimeout = 10 * time.Second

// since reads the optional "since" query parameter (RFC 3339). It writes
// the error response and returns false when it is invalid.
func (s *Server) since(c *gin.Context) (time.Time, bool) {
	v := c.Query("since")
	if v == "" {
		return time.Time{}, true
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		s.failf(c, codeInvalidQuery, "since must be an RFC 3339 time")
		return time.Time{}, false
	}
	return t, true
}

// writeAll answers an unpaginated list (never null) or the store's error.
func writeAll[T any](s *Server, c *gin.Context, what string, items []T, err error) {
	if err != nil {
		s.storeError(c, what, err)
		return
	}
	if items == nil {
		items = []T{}
	}
	c.JSON(http.StatusOK, gin.H{"items": items, "total": len(items)})
}

// listPage is the shape of every paginated answer.
type listPage[T any] struct {
	Items  []T `json:"items"`
	Total  int `json:"total"`
	Limit  int `json:"limit"`
	Offset int `json:"offset"`
}
