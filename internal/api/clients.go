package api

import (
	"net/http"
	"strings"
	"time"

	"github.com/coder/websocket"
	"github.com/gin-gonic/gin"

	"github.com/home-console/client-manager/internal/access"
	"github.com/home-console/client-manager/internal/fleet"
	"github.com/home-console/client-manager/internal/httpjson"
	"github.com/home-console/client-manager/pkg/agentproto"
)

// Client statuses shown by the API.
const (
	clientOnline  = "online"
	clientOffline = "offline"
	clientRevoked = "revoked"
)

// clientView is an agent as the API shows it.
type clientView struct {
	fleet.Agent
	Status string `json:"status"`
	// ConnectedAt is when the current connection was made (online only).
	ConnectedAt *time.Time `json:"connected_at,omitempty"`
}

func (s *Server) view(a fleet.Agent) clientView {
	v := clientView{Agent: a, Status: clientOffline}
	since, online := s.Presence.ConnectedSince(a.ID)
	switch {
	case a.Revoked:
		v.Status = clientRevoked
	case online:
		v.Status, v.ConnectedAt = clientOnline, &since
	}
	if v.Labels == nil {
		v.Labels = map[string]string{}
	}
	if v.Allowed == nil {
		v.Allowed = []string{}
	}
	return v
}

// listClients answers GET /api/clients?status=&label=k=v&q=&limit=&offset=.
func (s *Server) listClients(c *gin.Context) {
	limit, offset, ok := page(c)
	if !ok {
		return
	}
	f := fleet.AgentFilter{Text: c.Query("q"), Labels: map[string]string{}}
	for _, l := range c.QueryArray("label") {
		k, v, found := strings.Cut(l, "=")
		if !found || k == "" {
			httpjson.Error(c, http.StatusBadRequest, "invalid_query", "label must be key=value")
			return
		}
		f.Labels[k] = v
	}
	status := c.Query("status")
	switch status {
	case "", clientOnline, clientOffline:
	case clientRevoked:
		f.IncludeRevoked = true
	default:
		httpjson.Error(c, http.StatusBadRequest, "invalid_query", "status must be online, offline or revoked")
		return
	}
	if status == "" {
		f.IncludeRevoked = c.Query("include_revoked") == "true"
		f.Limit, f.Offset = limit, offset
		agents, total, err := s.Store.ListAgents(c.Request.Context(), f)
		if err != nil {
			s.storeError(c, "clients", err)
			return
		}
		s.writeClients(c, agents, total, limit, offset)
		return
	}
	s.listClientsByStatus(c, f, status, limit, offset)
}

// listClientsByStatus filters on presence, which lives in memory, so it
// scans the matching agents in pages and paginates the result itself.
func (s *Server) listClientsByStatus(c *gin.Context, f fleet.AgentFilter, status string, limit, offset int) {
	var matched []fleet.Agent
	f.Limit = 1000
	for f.Offset = 0; ; f.Offset += f.Limit {
		agents, total, err := s.Store.ListAgents(c.Request.Context(), f)
		if err != nil {
			s.storeError(c, "clients", err)
			return
		}
		for _, a := range agents {
			if s.view(a).Status == status {
				matched = append(matched, a)
			}
		}
		if f.Offset+len(agents) >= total || len(agents) == 0 {
			break
		}
	}
	total := len(matched)
	matched = matched[min(offset, total):min(offset+limit, total)]
	s.writeClients(c, matched, total, limit, offset)
}

func (s *Server) writeClients(c *gin.Context, agents []fleet.Agent, total, limit, offset int) {
	items := make([]clientView, 0, len(agents))
	for _, a := range agents {
		items = append(items, s.view(a))
	}
	c.JSON(http.StatusOK, listPage[clientView]{Items: items, Total: total, Limit: limit, Offset: offset})
}

// getClient answers GET /api/clients/:id.
func (s *Server) getClient(c *gin.Context) {
	a, err := s.Store.Agent(c.Request.Context(), c.Param("id"))
	if err != nil {
		s.storeError(c, "client", err)
		return
	}
	c.JSON(http.StatusOK, s.view(a))
}

// deleteClient answers DELETE /api/clients/:id[?revoke=true]: it
// disconnects the agent and, with revoke, revokes its credential so it
// cannot reconnect.
func (s *Server) deleteClient(c *gin.Context) {
	id := c.Param("id")
	ctx := c.Request.Context()
	if _, err := s.Store.Agent(ctx, id); err != nil {
		s.storeError(c, "client", err)
		return
	}
	revoke := c.Query("revoke") == "true"
	if revoke {
		p, _ := access.From(c)
		if err := s.Enrollment.Revoke(ctx, id, p.Name); err != nil {
			s.storeError(c, "client", err)
			return
		}
	}
	code, reason := websocket.StatusCode(agentproto.CloseDeleted), "disconnected by an operator"
	if revoke {
		code, reason = agentproto.CloseRevoked, "credential revoked"
	}
	disconnected := s.Presence.Disconnect(id, code, reason)
	c.JSON(http.StatusOK, gin.H{"id": id, "disconnected": disconnected, "revoked": revoke})
}
