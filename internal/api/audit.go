package api

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/home-console/client-manager/internal/access"
	"github.com/home-console/client-manager/internal/fleet"
)

// audited records every state-changing request in the audit log once it
// is answered: who (token name and role; "anonymous" with role "none"
// when authentication failed), from where (the peer's IP address, no
// port), what (method and route), on which target (the route's id), the
// HTTP status as result, and for commands their argv as detail, refused
// ones included. Request bodies and headers are not recorded, so no
// secret reaches the log. Requests refused by the rate limiter did
// nothing and are not recorded: a flood must not fill the store.
func (s *Server) audited(c *gin.Context) {
	c.Next()
	if c.Request.Method == http.MethodGet || c.Writer.Status() == http.StatusTooManyRequests {
		return
	}
	p, ok := access.From(c)
	role := p.Role.String()
	if !ok {
		p.Name, role = "anonymous", "none"
	}
	e := fleet.AuditEntry{
		Time:   time.Now().UTC(),
		Actor:  p.Name,
		Role:   role,
		Source: access.PeerIP(c.Request),
		Action: c.Request.Method + " " + c.FullPath(),
		Target: c.Param("id"),
		Result: strconv.Itoa(c.Writer.Status()),
	}
	if v, ok := c.Get(auditDetailKey); ok {
		e.Detail, _ = v.(string)
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(c.Request.Context()), 5*time.Second)
	defer cancel()
	if err := s.Store.AppendAudit(ctx, e); err != nil {
		s.Log.Error("audit append failed", "action", e.Action, "err", err)
	}
}

// auditDetailKey holds an optional detail a handler adds to its audit
// entry (e.g. the command line it submitted).
const auditDetailKey = "api.audit_detail"

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
