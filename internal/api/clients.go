package api

import (
	"context"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/home-console/client-manager/internal/access"
	"github.com/home-console/client-manager/internal/fleet"
	"github.com/home-console/client-manager/pkg/agentproto"
)

// maxSelectorLabels bounds the entries of a label selector: the labels of
// a batch, or the label= parameters of GET /api/clients. Beyond it the
// request is refused with 400 selector_too_large.
const maxSelectorLabels = 64

// selectorTooLarge is the error of a label selector of n entries, more
// than maxSelectorLabels.
func selectorTooLarge(n int) error {
	return fleet.Errorf(codeSelectorTooLarge, "the label selector has %d entries; at most %d are allowed", n, maxSelectorLabels)
}

// Agent statuses shown by the API.
const (
	agentOnline  = "online"
	agentOffline = "offline"
	agentRevoked = "revoked"
)

// agentView is an agent as the API shows it.
type agentView struct {
	fleet.Agent
	Status string `json:"status"`
	// ConnectedAt is when the current connection was made (online only).
	ConnectedAt *time.Time `json:"connected_at,omitempty"`
}

func (s *Server) view(a fleet.Agent) agentView {
	v := agentView{Agent: a, Status: agentOffline}
	since, online := s.Presence.ConnectedSince(a.ID)
	switch {
	case a.Revoked:
		v.Status = agentRevoked
	case online:
		v.Status, v.ConnectedAt = agentOnline, &since
	}
	if v.Labels == nil {
		v.Labels = map[string]string{}
	}
	if v.Allowed == nil {
		v.Allowed = []string{}
	}
	return v
}

// listAgents answers GET /api/clients?status=&label=k=v&q=&limit=&offset=.
func (s *Server) listAgents(c *gin.Context) {
	limit, offset, ok := s.page(c)
	if !ok {
		return
	}
	labels, err := labelSelector(c.QueryArray("label"))
	if err != nil {
		s.fail(c, err)
		return
	}
	f := fleet.AgentFilter{Text: c.Query("q"), Labels: labels}
	status := c.Query("status")
	switch status {
	case "", agentOnline, agentOffline:
	case agentRevoked:
		f.IncludeRevoked = true
	default:
		s.failf(c, codeInvalidQuery, "status must be online, offline or revoked")
		return
	}
	if status == "" {
		if f.IncludeRevoked, ok = s.boolParam(c, "include_revoked"); !ok {
			return
		}
		f.Limit, f.Offset = limit, offset
		agents, total, err := s.Store.ListAgents(c.Request.Context(), f)
		if err != nil {
			s.storeError(c, "clients", err)
			return
		}
		s.writeAgents(c, agents, total, limit, offset)
		return
	}
	s.listAgentsByStatus(c, f, status, limit, offset)
}

// labelSelector parses the label= parameters of a query, "key=value"
// each: at most maxSelectorLabels (selector_too_large beyond) with a
// non-empty key (invalid_query otherwise).
func labelSelector(params []string) (map[string]string, error) {
	if len(params) > maxSelectorLabels {
		return nil, selectorTooLarge(len(params))
	}
	labels := make(map[string]string, len(params))
	for _, l := range params {
		k, v, found := strings.Cut(l, "=")
		if !found || k == "" {
			return nil, fleet.Errorf(codeInvalidQuery, "label must be key=value")
		}
		if _, dup := labels[k]; dup {
			return nil, fleet.Errorf(codeInvalidQuery, "label %s is given more than once", quoteParam(k))
		}
		labels[k] = v
	}
	return labels, nil
}

// listAgentsByStatus filters on presence, which lives in memory, so it
// scans the matching agents and paginates the result itself.
func (s *Server) listAgentsByStatus(c *gin.Context, f fleet.AgentFilter, status string, limit, offset int) {
	var matched []fleet.Agent
	err := s.scanAgents(c.Request.Context(), f, func(_ int, agents []fleet.Agent) error {
		for _, a := range agents {
			if s.view(a).Status == status {
				matched = append(matched, a)
			}
		}
		return nil
	})
	if err != nil {
		s.storeError(c, "clients", err)
		return
	}
	total := len(matched)
	matched = matched[min(offset, total):min(offset+limit, total)]
	s.writeAgents(c, matched, total, limit, offset)
}

// scanAgents calls fn with each page of the agents f selects (f.Limit and
// f.Offset are its own) and the number matching, until the last page or
// the first error, which it returns.
func (s *Server) scanAgents(ctx context.Context, f fleet.AgentFilter, fn func(total int, page []fleet.Agent) error) error {
	f.Limit = maxLimit
	for f.Offset = 0; ; {
		page, total, err := s.Store.ListAgents(ctx, f)
		if err != nil {
			return err
		}
		if err := fn(total, page); err != nil {
			return err
		}
		// The store may return less than asked: advance by what came.
		f.Offset += len(page)
		if len(page) == 0 || f.Offset >= total {
			return nil
		}
	}
}

func (s *Server) writeAgents(c *gin.Context, agents []fleet.Agent, total, limit, offset int) {
	items := make([]agentView, 0, len(agents))
	for _, a := range agents {
		items = append(items, s.view(a))
	}
	c.JSON(http.StatusOK, listPage[agentView]{Items: items, Total: total, Limit: limit, Offset: offset})
}

// getAgent answers GET /api/clients/:id.
func (s *Server) getAgent(c *gin.Context) {
	a, err := s.Store.Agent(c.Request.Context(), c.Param("id"))
	if err != nil {
		s.storeError(c, "client", err)
		return
	}
	c.JSON(http.StatusOK, s.view(a))
}

// deleteAgent answers DELETE /api/clients/:id[?revoke=true]: it
// disconnects the agent and, with revoke, revokes its credential so it
// cannot reconnect.
func (s *Server) deleteAgent(c *gin.Context) {
	revoke, ok := s.boolParam(c, "revoke")
	if !ok {
		return
	}
	id := c.Param("id")
	ctx := c.Request.Context()
	if _, err := s.Store.Agent(ctx, id); err != nil {
		s.storeError(c, "client", err)
		return
	}
	if revoke {
		p, _ := access.From(c)
		if err := s.Enrollment.Revoke(ctx, id, p.Name); err != nil {
			s.storeError(c, "client", err)
			return
		}
	}
	code, reason := int(agentproto.CloseDeleted), "disconnected by an operator"
	if revoke {
		code, reason = int(agentproto.CloseRevoked), "credential revoked"
	}
	disconnected := s.Presence.Disconnect(id, code, reason)
	c.JSON(http.StatusOK, gin.H{"id": id, "disconnected": disconnected, "revoked": revoke})
}
