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
	"github.com/home-console/client-manager/internal/dispatch"
	"github.com/home-console/client-manager/internal/fleet"
	"github.com/home-console/client-manager/internal/httpjson"
	"github.com/home-console/client-manager/internal/secret"
)

// maxBatchTargets bounds how many agents one batch may address.
const maxBatchTargets = 10000

// batchBody is the body of POST /api/commands: one command for the agents
// selected by ids and/or labels (both given: an agent must match both).
type batchBody struct {
	ClientIDs []string          `json:"client_ids"`
	Labels    map[string]string `json:"labels"`
	commandBody
}

// batchItem is one agent's outcome in a batch.
type batchItem struct {
	ClientID string                `json:"client_id"`
	Command  *commandView          `json:"command,omitempty"`
	Error    *httpjson.ErrorDetail `json:"error,omitempty"`
}

// batchCommand answers POST /api/commands[?wait=30s] with 202 and one item
// per selected agent; with wait, it first waits for the results.
func (s *Server) batchCommand(c *gin.Context) {
	wait, ok := waitParam(c)
	if !ok {
		return
	}
	var body batchBody
	if !s.decodeJSON(c, &body) {
		return
	}
	if len(body.ClientIDs) == 0 && len(body.Labels) == 0 {
		httpjson.Error(c, http.StatusBadRequest, "invalid_selector", "select agents with client_ids and/or labels")
		return
	}
	agents, total, err := s.Store.ListAgents(c.Request.Context(), fleet.AgentFilter{
		IDs: body.ClientIDs, Labels: body.Labels, Limit: maxBatchTargets,
	})
	if err != nil {
		s.storeError(c, "clients", err)
		return
	}
	if total > maxBatchTargets {
		httpjson.Error(c, http.StatusRequestEntityTooLarge, "too_many_targets", "a batch may address at most 10000 agents")
		return
	}
	p, _ := access.From(c)
	if !s.Policy.Allows(p.Role, body.Command) {
		httpjson.Error(c, http.StatusForbidden, "command_not_allowed",
			"the "+p.Role.String()+" role may not run "+strconv.Quote(body.Command))
		return
	}
	c.Set(auditDetailKey, argvDetail(body.Command, body.Args))
	batchID := secret.NewID("bat_")
	items := make([]batchItem, len(agents))
	for i, a := range agents {
		req := body.request(a.ID, p)
		req.BatchID = batchID
		items[i] = s.submitOne(c.Request.Context(), req)
	}
	if wait > 0 {
		s.waitAll(c.Request.Context(), items, wait)
	}
	c.JSON(http.StatusAccepted, gin.H{"batch_id": batchID, "items": items, "total": len(items)})
}

func (s *Server) submitOne(ctx context.Context, req dispatch.Request) batchItem {
	item := batchItem{ClientID: req.ClientID}
	cmd, err := s.Commands.Submit(ctx, req)
	if err != nil {
		item.Error = &httpjson.ErrorDetail{Code: submitErrorCode(err), Message: err.Error()}
		return item
	}
	v := viewCommand(cmd)
	item.Command = &v
	return item
}

func submitErrorCode(err error) string {
	switch {
	case errors.Is(err, dispatch.ErrInvalidRequest):
		return "invalid_command"
	case errors.Is(err, dispatch.ErrClientOffline):
		return "client_offline"
	case errors.Is(err, dispatch.ErrClientRevoked):
		return "client_revoked"
	case errors.Is(err, dispatch.ErrUnknownClient):
		return "unknown_client"
	}
	return "internal"
}

// waitAll waits, at most wait in total, for every submitted command and
// replaces each item's command with its latest state.
func (s *Server) waitAll(ctx context.Context, items []batchItem, wait time.Duration) {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for i := range items {
		if items[i].Command == nil {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func(it *batchItem) {
			defer func() { <-sem; wg.Done() }()
			if got, err := s.Commands.Wait(ctx, it.Command.ID); err == nil {
				v := viewCommand(got)
				it.Command = &v
			}
		}(&items[i])
	}
	wg.Wait()
}
