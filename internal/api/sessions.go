package api

import (
	"cmp"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/home-console/client-manager/internal/access"
	"github.com/home-console/client-manager/internal/fleet"
	"github.com/home-console/client-manager/internal/ratelimit"
)

// Terminals runs operator terminals on agents (*sessions.Manager
// implements it). Its methods are safe for concurrent use.
type Terminals interface {
	// IssueTicket returns a single-use ticket authenticating p for
	// agentID's terminal WebSockets, and when it expires.
	IssueTicket(p access.Principal, agentID string) (string, time.Time)
	// RedeemTicket uses up a ticket and returns its principal, or an
	// error with fleet.CodeTicketInvalid (unknown, used, expired, or for
	// another agent).
	RedeemTicket(ticket, agentID string) (access.Principal, error)
	// SessionAgent returns the agent of a session (fleet.CodeNotFound).
	SessionAgent(sessionID string) (string, error)
	// ServeTerminal opens the terminal, upgrades w, r to the terminal
	// WebSocket and bridges them until the session ends. A coded error
	// means it wrote nothing to w; once it wrote, the error is nil.
	ServeTerminal(w http.ResponseWriter, r *http.Request, req fleet.TerminalRequest) (fleet.TerminalSession, error)
	// ServeWatch serves a read-only view of a running session, with the
	// same error rule as ServeTerminal.
	ServeWatch(w http.ResponseWriter, r *http.Request, p access.Principal, sessionID string) error
	// ListSessions returns sessions, newest first, at most limit.
	ListSessions(agentID string, limit int) []fleet.TerminalSession
	// GetSession returns one session.
	GetSession(id string) (fleet.TerminalSession, bool)
	// OpenRecording opens a session's asciicast v2 recording
	// (fleet.CodeNotFound).
	OpenRecording(id string) (io.ReadSeekCloser, error)
}

// ticketParam is the query parameter that carries a terminal ticket.
const ticketParam = "ticket"

// auditAlwaysKey marks a request audited although it is a GET (terminal
// sessions and file transfers).
const auditAlwaysKey = "api.audit_always"

// auditAlways marks the request for audited and beginAudit.
func auditAlways(c *gin.Context) { c.Set(auditAlwaysKey, true) }

// registerSessions adds the terminal and file routes, if their
// dependencies are set.
func (s *Server) registerSessions(r gin.IRouter) {
	s.TerminalRole = cmp.Or(s.TerminalRole, access.RoleAdmin)
	s.FilesRole = cmp.Or(s.FilesRole, access.RoleAdmin)
	if s.Terminals != nil {
		ws := r.Group("/api", auditAlways, s.audited, s.authenticateTicket, s.checkOrigin,
			s.require(s.TerminalRole), s.beginAudit, s.checkQuery)
		ws.GET("/clients/:id/terminal", s.serveTerminal)
		ws.GET("/sessions/:id/watch", s.serveWatch)
		g := r.Group("/api", s.audited, s.authenticate, s.checkOrigin, s.require(s.TerminalRole), s.beginAudit, s.checkQuery)
		g.POST("/clients/:id/terminal/tickets", s.createTicket)
		g.GET("/sessions", s.listSessions)
		g.GET("/sessions/:id", s.getSession)
		g.GET("/sessions/:id/recording", s.getRecording)
	}
	if s.Files != nil {
		g := r.Group("/api", auditAlways, s.audited, s.authenticate, s.checkOrigin, s.require(s.FilesRole), s.beginAudit, s.checkQuery)
		g.PUT("/clients/:id/files", s.upload)
		g.GET("/clients/:id/files", s.download)
		g.GET("/clients/:id/files/stat", s.statFile)
		g.GET("/clients/:id/files/list", s.listFiles)
	}
}

// authenticateTicket authenticates a WebSocket request by its ?ticket=
// (browsers cannot set Authorization on a WebSocket) and otherwise as
// authenticate does. A ticket is for the route's agent (the session's, on
// /watch); a failed redemption spends from the caller address's rate
// bucket and answers 401 ticket_invalid.
func (s *Server) authenticateTicket(c *gin.Context) {
	tk := c.Query(ticketParam)
	if tk == "" || c.GetHeader("Authorization") != "" {
		s.authenticate(c)
		return
	}
	p, err := s.redeem(c, tk)
	key := "principal:" + p.Name
	if err != nil {
		key = "ip:" + access.PeerIP(c.Request)
	}
	if wait, ok := s.Limiter.Allow(key, time.Now()); !ok {
		c.Header("Retry-After", strconv.Itoa(ratelimit.RetryAfter(wait)))
		s.failf(c, codeRateLimited, "too many requests from this caller; retry later")
		return
	}
	if err != nil {
		s.fail(c, err)
		return
	}
	p.Source = access.PeerIP(c.Request)
	access.Set(c, p)
}

// redeem uses up the request's ticket for the route's agent.
func (s *Server) redeem(c *gin.Context, tk string) (access.Principal, error) {
	agentID := c.Param("id")
	if c.FullPath() == "/api/sessions/:id/watch" {
		var err error
		if agentID, err = s.Terminals.SessionAgent(c.Param("id")); err != nil {
			_, _ = s.Terminals.RedeemTicket(tk, "")
			return access.Principal{}, fleet.Errorf(fleet.CodeTicketInvalid, "ticket is not for this session's agent")
		}
	}
	return s.Terminals.RedeemTicket(tk, agentID)
}

// agentExists answers 404 not_found for an unknown agent.
func (s *Server) agentExists(c *gin.Context) bool {
	if _, err := s.Store.Agent(c.Request.Context(), c.Param("id")); err != nil {
		s.storeError(c, "client", err)
		return false
	}
	return true
}

// createTicket answers POST /api/clients/{id}/terminal/tickets.
func (s *Server) createTicket(c *gin.Context) {
	if !s.agentExists(c) {
		return
	}
	p, _ := access.From(c)
	tk, exp := s.Terminals.IssueTicket(p, c.Param("id"))
	c.JSON(http.StatusCreated, gin.H{"ticket": tk, "expires_at": exp.UTC()})
}

// terminalRequest reads ?cols=&rows=&term= (defaults 80, 24,
// xterm-256color). It writes the error response and returns false when
// one is invalid.
func (s *Server) terminalRequest(c *gin.Context) (fleet.TerminalRequest, bool) {
	p, _ := access.From(c)
	req := fleet.TerminalRequest{AgentID: c.Param("id"), Operator: p.Name, Role: p.Role.String(),
		Cols: DefaultTerminalCols, Rows: DefaultTerminalRows, Term: DefaultTerminalTerm}
	for _, f := range []struct {
		name string
		v    *int
	}{{"cols", &req.Cols}, {"rows", &req.Rows}} {
		if v := c.Query(f.name); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > MaxTerminalSize {
				s.failf(c, codeInvalidQuery, "%s must be an integer from 1 to %d", f.name, MaxTerminalSize)
				return req, false
			}
			*f.v = n
		}
	}
	if v := c.Query("term"); v != "" {
		if !validTerm(v) {
			s.failf(c, codeInvalidQuery, "term must be 1 to 64 letters, digits, '-', '_' or '.'")
			return req, false
		}
		req.Term = v
	}
	return req, true
}

// Terminal defaults and bounds of the terminal route's query.
const (
	DefaultTerminalCols = 80
	DefaultTerminalRows = 24
	DefaultTerminalTerm = "xterm-256color"
	MaxTerminalSize     = 1000
)

// validTerm reports whether v is a plausible TERM value.
func validTerm(v string) bool {
	if len(v) > 64 {
		return false
	}
	for _, r := range v {
		if !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}

// serveTerminal answers GET /api/clients/{id}/terminal: checks, then the
// WebSocket until the session ends; the audit entry's detail is the
// session's summary.
func (s *Server) serveTerminal(c *gin.Context) {
	req, ok := s.terminalRequest(c)
	if !ok || !s.agentExists(c) {
		return
	}
	rec, err := s.Terminals.ServeTerminal(c.Writer, c.Request, req)
	if err != nil {
		c.Set(auditDetailKey, "refused: "+string(codeOf(err)))
		s.fail(c, err)
		return
	}
	c.Abort()
	if rec.ID != "" {
		c.Set(auditDetailKey, sessionDetail(rec))
	}
}

// sessionDetail is the audit detail of an ended session.
func sessionDetail(rec fleet.TerminalSession) string {
	exit := "none"
	if rec.ExitCode != nil {
		exit = strconv.Itoa(*rec.ExitCode)
	}
	return fmt.Sprintf("session %s exit %s reason %q bytes_in %d bytes_out %d", rec.ID, exit, rec.EndReason, rec.BytesIn, rec.BytesOut)
}

// serveWatch answers GET /api/sessions/{id}/watch.
func (s *Server) serveWatch(c *gin.Context) {
	p, _ := access.From(c)
	if err := s.Terminals.ServeWatch(c.Writer, c.Request, p, c.Param("id")); err != nil {
		c.Set(auditDetailKey, "refused: "+string(codeOf(err)))
		s.fail(c, err)
		return
	}
	c.Abort()
	c.Set(auditDetailKey, "watched session "+c.Param("id"))
}

// listSessions answers GET /api/sessions?agent_id=&limit=.
func (s *Server) listSessions(c *gin.Context) {
	limit, _, ok := s.page(c)
	if !ok {
		return
	}
	c.JSON(http.StatusOK, gin.H{"sessions": s.Terminals.ListSessions(c.Query("agent_id"), limit)})
}

// getSession answers GET /api/sessions/{id}.
func (s *Server) getSession(c *gin.Context) {
	rec, ok := s.Terminals.GetSession(c.Param("id"))
	if !ok {
		s.storeError(c, "session", fleet.ErrNotFound)
		return
	}
	c.JSON(http.StatusOK, rec)
}

// getRecording answers GET /api/sessions/{id}/recording with the
// asciicast v2 file (Range requests served).
func (s *Server) getRecording(c *gin.Context) {
	f, err := s.Terminals.OpenRecording(c.Param("id"))
	if err != nil {
		s.storeError(c, "session", err)
		return
	}
	defer f.Close()
	c.Header("Content-Type", "application/x-asciicast")
	c.Header("Content-Disposition", `attachment; filename="`+c.Param("id")+`.cast"`)
	http.ServeContent(c.Writer, c.Request, "", time.Time{}, f)
}
