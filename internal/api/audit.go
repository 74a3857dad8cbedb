package api

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/home-console/client-manager/internal/access"
	"github.com/home-console/client-manager/internal/fleet"
)

// audited records every state-changing request in the audit log (and,
// marked by auditAlways, the terminal and file routes' GETs): who
// (token name and role; "anonymous" with role "none" when authentication
// failed), from where (the peer's IP address, no port), what (method and
// route), on which target (the route's id), the HTTP status as result,
// and for commands their argv as detail, refused ones included. Request
// bodies and headers are not recorded, so no secret reaches the log.
// Requests refused by the rate limiter did nothing and are not recorded:
// a flood must not fill the store.
//
// A request that passes authentication and its role check has its entry
// written before it acts (beginAudit, result "pending"): if the store
// refuses the entry, the request is answered 503 storage_unavailable and
// does nothing. Once answered, audited finishes the entry with the status
// and detail; a finish the store refuses is kept and retried (see
// RetryAudit). A request refused before that (401, 403) did nothing; its
// entry is appended once it is answered.
func (s *Server) audited(c *gin.Context) {
	c.Next()
	if isRead(c) || c.Writer.Status() == http.StatusTooManyRequests {
		return
	}
	result := strconv.Itoa(c.Writer.Status())
	detail := c.GetString(auditDetailKey)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(c.Request.Context()), auditTimeout)
	defer cancel()
	if id, ok := c.Get(auditIDKey); ok {
		s.finishAudit(ctx, pendingAudit{id: id.(int64), result: result, detail: detail})
		return
	}
	e := auditEntry(c)
	e.Result, e.Detail = result, detail
	if _, err := s.Store.AppendAudit(ctx, e); err != nil {
		s.Log.Error("audit entry of a refused request not written", "action", e.Action, "result", result, "err", err)
	}
}

// isRead reports whether the request only reads: a GET, but for terminal
// sessions and file transfers (auditAlways), which are audited too.
func isRead(c *gin.Context) bool {
	return c.Request.Method == http.MethodGet && !c.GetBool(auditAlwaysKey)
}

// auditEntry is the audit entry of the request, without result and
// detail.
func auditEntry(c *gin.Context) fleet.AuditEntry {
	p, ok := access.From(c)
	role := p.Role.String()
	if !ok {
		p.Name, role = "anonymous", "none"
	}
	return fleet.AuditEntry{
		Time:   time.Now().UTC(),
		Actor:  p.Name,
		Role:   role,
		Source: access.PeerIP(c.Request),
		Action: c.Request.Method + " " + c.FullPath(),
		Target: c.Param("id"),
	}
}

// beginAudit writes the audit entry of a state-changing request before
// its handler acts, with result fleet.AuditPending, for audited to
// finish. If the store refuses it, or too many finishes wait for the
// store already (maxUnfinishedAudit), the request is answered 503
// storage_unavailable (500 internal for another failure) and its handler
// does not run.
func (s *Server) beginAudit(c *gin.Context) {
	if isRead(c) {
		return
	}
	if n := s.UnfinishedAudits(); n >= maxUnfinishedAudit {
		s.failf(c, fleet.CodeStorageUnavailable,
			"request not carried out: %d audit entries wait for the store to record their outcome", n)
		return
	}
	e := auditEntry(c)
	e.Result = fleet.AuditPending
	ctx, cancel := context.WithTimeout(c.Request.Context(), auditTimeout)
	defer cancel()
	id, err := s.Store.AppendAudit(ctx, e)
	if fleet.CodeOf(err) == fleet.CodeStorageUnavailable {
		err = &fleet.Error{Code: fleet.CodeStorageUnavailable, Cause: err,
			Message: "request not carried out: its audit entry cannot be written: " + fleet.MessageOf(err)}
	}
	if err != nil {
		s.fail(c, err)
		return
	}
	c.Set(auditIDKey, id)
}

// Keys of the request context, and bounds, of the audit log.
const (
	// auditDetailKey holds an optional detail a handler adds to its
	// audit entry (e.g. the command line it submitted).
	auditDetailKey = "api.audit_detail"
	// auditIDKey holds the id of the entry beginAudit wrote.
	auditIDKey = "api.audit_id"
	// auditTimeout bounds one write of the audit log.
	auditTimeout = 5 * time.Second
	// maxUnfinishedAudit bounds the finishes kept while the store
	// refuses them; beyond it, state-changing requests are refused.
	maxUnfinishedAudit = 10000
)

// pendingAudit is the outcome of a request whose audit entry is written
// but not finished yet.
type pendingAudit struct {
	id             int64
	result, detail string
}

// auditBacklog holds the outcomes the store refused, oldest first.
type auditBacklog struct {
	mu      sync.Mutex
	pending []pendingAudit
}

// finishAudit records p's outcome, after those still waiting; if the
// store refuses it, it waits for RetryAudit.
func (s *Server) finishAudit(ctx context.Context, p pendingAudit) {
	s.audit.mu.Lock()
	s.audit.pending = append(s.audit.pending, p)
	s.audit.mu.Unlock()
	s.flushAudit(ctx)
}

// UnfinishedAudits returns the number of audit outcomes waiting for the
// store to take them.
func (s *Server) UnfinishedAudits() int {
	s.audit.mu.Lock()
	defer s.audit.mu.Unlock()
	return len(s.audit.pending)
}

// flushAudit writes the waiting outcomes, oldest first, and stops at the
// first the store refuses. An entry that no longer exists is skipped.
func (s *Server) flushAudit(ctx context.Context) {
	s.audit.mu.Lock()
	defer s.audit.mu.Unlock()
	for len(s.audit.pending) > 0 {
		p := s.audit.pending[0]
		err := s.Store.FinishAudit(ctx, p.id, p.result, p.detail)
		if err != nil && !errors.Is(err, fleet.ErrNotFound) {
			s.Log.Warn("audit outcome not recorded yet; retrying", "audit_id", p.id, "waiting", len(s.audit.pending), "err", err)
			return
		}
		s.audit.pending = s.audit.pending[1:]
	}
}

// RetryAudit records the outcomes the store refused once it takes them
// again: it tries every interval until ctx ends.
func (s *Server) RetryAudit(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if s.UnfinishedAudits() > 0 {
				s.flushAudit(ctx)
			}
		}
	}
}

// listAudit answers GET /api/audit?actor=&action=&target=&since=.
func (s *Server) listAudit(c *gin.Context) {
	limit, offset, ok := s.page(c)
	if !ok {
		return
	}
	f := fleet.AuditFilter{
		Actor:  c.Query("actor"),
		Action: c.Query("action"),
		Target: c.Query("target"),
		Limit:  limit,
		Offset: offset,
	}
	if f.Since, ok = s.since(c); !ok {
		return
	}
	entries, total, err := s.Store.ListAudit(c.Request.Context(), f)
	if err != nil {
		s.storeError(c, "audit", err)
		return
	}
	if entries == nil {
		entries = []fleet.AuditEntry{}
	}
	c.JSON(http.StatusOK, listPage[fleet.AuditEntry]{Items: entries, Total: total, Limit: limit, Offset: offset})
}
