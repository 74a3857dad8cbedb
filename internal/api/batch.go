package api

import (
	"context"
	"errors"
	"maps"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/home-console/client-manager/internal/access"
	"github.com/home-console/client-manager/internal/fleet"
	"github.com/home-console/client-manager/internal/httpjson"
	"github.com/home-console/client-manager/internal/longlived"
	"github.com/home-console/client-manager/internal/secret"
)

// maxBatchTargets bounds how many agents one batch may address: as many
// ids, or as many agents matching its labels. Beyond it the batch is
// refused whole with 413 too_many_targets; nothing is submitted.
const maxBatchTargets = 10000

// batchBody is the body of POST /api/commands: one command for the agents
// selected by ids and/or labels (both given: an agent must match both).
type batchBody struct {
	AgentIDs []string          `json:"client_ids"`
	Labels   map[string]string `json:"labels"`
	commandBody
}

// batchItem is one agent's outcome in a batch: its command, or the error
// that kept it from getting one.
type batchItem struct {
	AgentID string                `json:"client_id"`
	Command *commandView          `json:"command,omitempty"`
	Error   *httpjson.ErrorDetail `json:"error,omitempty"`
}

// batchAnswer is the answer to POST /api/commands.
type batchAnswer struct {
	BatchID string      `json:"batch_id"`
	Items   []batchItem `json:"items"`
	Total   int         `json:"total"`
}

// target is an agent a batch addresses; refused, if set, says why it
// gets no command.
type target struct {
	id      string
	refused error
}

// batchCommand answers POST /api/commands[?wait=30s] with 202 and one item
// per addressed agent: every id of client_ids (once each, in their order),
// or every agent the labels select. With wait, it first waits for the
// results.
func (s *Server) batchCommand(c *gin.Context) {
	wait, ok := s.wait(c)
	if !ok {
		return
	}
	var body batchBody
	if !s.decodeJSON(c, &body) || !s.allowed(c, body.commandBody) {
		return
	}
	if err := checkSelector(body); err != nil {
		s.fail(c, err)
		return
	}
	ctx := c.Request.Context()
	targets, err := s.batchTargets(ctx, body)
	if err != nil {
		s.storeError(c, "clients", err)
		return
	}
	p, _ := access.From(c)
	answer := batchAnswer{BatchID: secret.NewID("bat_")}
	answer.Items, err = s.submitAll(ctx, targets, body.commandBody, p, answer.BatchID)
	if err != nil {
		s.fail(c, err)
		return
	}
	if wait > 0 {
		_ = longlived.Extend(c.Writer, c.Request, wait)
		s.waitAll(ctx, answer.Items, wait)
	}
	answer.Total = len(answer.Items)
	c.JSON(http.StatusAccepted, answer)
}

// checkSelector refuses a batch that selects nothing, names an empty id,
// names more than maxBatchTargets ids (counted as given), or has more
// than maxSelectorLabels labels.
func checkSelector(body batchBody) error {
	switch {
	case len(body.AgentIDs) == 0 && len(body.Labels) == 0:
		return fleet.Errorf(codeInvalidSelector, "select agents with client_ids and/or labels")
	case len(body.Labels) > maxSelectorLabels:
		return selectorTooLarge(len(body.Labels))
	case len(body.AgentIDs) > maxBatchTargets:
		return fleet.Errorf(codeTooManyTargets, "client_ids names %d agents; a batch may address at most %d", len(body.AgentIDs), maxBatchTargets)
	case slices.Contains(body.AgentIDs, ""):
		return fleet.Errorf(codeInvalidSelector, "client_ids must not contain an empty id")
	}
	return nil
}

// batchTargets resolves a batch's selector: labels alone (labelTargets)
// or ids, with or without labels (idTargets).
func (s *Server) batchTargets(ctx context.Context, body batchBody) ([]target, error) {
	if len(body.AgentIDs) == 0 {
		return s.labelTargets(ctx, body.Labels)
	}
	return s.idTargets(ctx, body.AgentIDs, body.Labels)
}

// labelTargets addresses every agent (not revoked) that has labels, or
// fails with too_many_targets when more than maxBatchTargets do.
func (s *Server) labelTargets(ctx context.Context, labels map[string]string) ([]target, error) {
	var targets []target
	err := s.scanAgents(ctx, fleet.AgentFilter{Labels: labels}, func(total int, page []fleet.Agent) error {
		if total > maxBatchTargets {
			return fleet.Errorf(codeTooManyTargets, "the labels select %d agents; a batch may address at most %d", total, maxBatchTargets)
		}
		for _, a := range page {
			targets = append(targets, target{id: a.ID})
		}
		return nil
	})
	return targets, err
}

// idTargets addresses each of ids once, in their order. With labels, an
// id whose agent does not have them all is refused (unmatched); without,
// Submit refuses unknown and revoked agents itself.
func (s *Server) idTargets(ctx context.Context, ids []string, labels map[string]string) ([]target, error) {
	var targets []target
	seen := make(map[string]bool, len(ids))
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			targets = append(targets, target{id: id})
		}
	}
	if len(labels) == 0 {
		return targets, nil
	}
	matched := make(map[string]bool, len(targets))
	f := fleet.AgentFilter{IDs: slices.Collect(maps.Keys(seen)), Labels: labels, IncludeRevoked: true}
	err := s.scanAgents(ctx, f, func(_ int, page []fleet.Agent) error {
		for _, a := range page {
			matched[a.ID] = true
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for i := range targets {
		if !matched[targets[i].id] {
			targets[i].refused = s.unmatched(ctx, targets[i].id)
		}
	}
	return targets, nil
}

// unmatched says why agent id, named by a batch, does not have the
// batch's labels: it is unknown, revoked, or has other labels.
func (s *Server) unmatched(ctx context.Context, id string) error {
	a, err := s.Store.Agent(ctx, id)
	switch {
	case errors.Is(err, fleet.ErrNotFound):
		return commandError(id, fleet.ErrUnknownAgent)
	case err != nil:
		return err
	case a.Revoked:
		return commandError(id, fleet.ErrAgentRevoked)
	}
	return fleet.Errorf(codeLabelsNotMatched, "agent %q does not have the batch's labels", id)
}

// submitAll submits the command to every target not refused and returns
// one item per target. A command the dispatcher finds invalid is invalid
// for every target, and a store that refuses writes refuses them all:
// either error, on the first submission, fails the whole batch before
// anything was stored.
func (s *Server) submitAll(ctx context.Context, targets []target, body commandBody, p access.Principal, batchID string) ([]batchItem, error) {
	items := make([]batchItem, len(targets))
	submitted := false
	for i, t := range targets {
		items[i].AgentID = t.id
		err := t.refused
		if err == nil {
			req := body.request(t.id, p)
			req.BatchID = batchID
			cmd, serr := s.Commands.Submit(ctx, req)
			if serr == nil {
				v := viewCommand(cmd)
				items[i].Command, submitted = &v, true
				continue
			}
			if code := fleet.CodeOf(serr); !submitted && (code == fleet.CodeInvalidCommand || code == fleet.CodeStorageUnavailable) {
				return nil, serr
			}
			err = commandError(t.id, serr)
		}
		d := detail(err)
		if d.Code == string(fleet.CodeInternal) {
			s.Log.Error("batch command not submitted", "agent_id", t.id, "err", err)
		}
		items[i].Error = &d
	}
	return items, nil
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
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if got, err := s.Commands.Wait(ctx, items[i].Command.ID); err == nil {
				v := viewCommand(got)
				items[i].Command = &v
			}
		})
	}
	wg.Wait()
}
