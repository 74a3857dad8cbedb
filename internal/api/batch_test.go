package api_test

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/home-console/client-manager/internal/fleet"
)

// TestBatchByLabelsAddressesEveryAgent: a label selector matching 5,000
// agents (five store pages) addresses all of them, and no other agent.
func TestBatchByLabelsAddressesEveryAgent(t *testing.T) {
	f := newFixture(t)
	ids := f.addAgents(t, 5000, map[string]string{"fleet": "big"})
	f.addAgents(t, 3, map[string]string{"fleet": "small"})

	var got batchAnswer
	status, code := f.call(t, "POST", "/api/commands",
		`{"labels":{"fleet":"big"},"command":"uname","queue_if_offline":true}`, &got)
	if status != http.StatusAccepted || code != "" || got.Total != len(ids) || len(got.Items) != len(ids) {
		t.Fatalf("batch = %d %q, total %d, %d items; want 202 and %d", status, code, got.Total, len(got.Items), len(ids))
	}
	outcome := got.outcome()
	for _, id := range ids {
		if outcome[id] != string(fleet.StatusQueued) {
			t.Fatalf("agent %s: %q, want queued (%d distinct agents answered)", id, outcome[id], len(outcome))
		}
	}
	if len(outcome) != len(ids) {
		t.Fatalf("%d distinct agents answered, want %d", len(outcome), len(ids))
	}
	_, stored, err := f.env.Store.ListCommands(t.Context(), fleet.CommandFilter{BatchID: got.BatchID})
	if err != nil || stored != len(ids) {
		t.Fatalf("stored %d commands of the batch, %v; want %d", stored, err, len(ids))
	}
}

// TestBatchAnswersEveryTarget: every requested agent appears in the
// answer once, with its command or its own error code.
func TestBatchAnswersEveryTarget(t *testing.T) {
	f := newFixture(t)
	online, cred := f.env.NewAgent(t, "online")
	f.env.Connect(t, cred)
	offline := f.addAgents(t, 1, map[string]string{"fleet": "off", "room": "lab"})[0]
	revoked := f.addAgents(t, 1, map[string]string{"fleet": "rev", "room": "lab"})[0]
	if err := f.env.Store.RevokeAgent(t.Context(), revoked, time.Now()); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		body map[string]any
		want map[string]string
	}{
		{"ids", map[string]any{"client_ids": []string{online, offline, revoked, "agt_unknown", online}}, map[string]string{
			online: string(fleet.StatusDispatched), offline: "client_offline", revoked: "client_revoked", "agt_unknown": "unknown_client",
		}},
		{"ids and labels", map[string]any{"client_ids": []string{offline, online, revoked, "agt_unknown"}, "labels": map[string]string{"room": "lab"},
			"queue_if_offline": true}, map[string]string{
			offline: string(fleet.StatusQueued), online: "labels_not_matched", revoked: "client_revoked", "agt_unknown": "unknown_client",
		}},
		{"labels skip revoked agents", map[string]any{"labels": map[string]string{"room": "lab"}}, map[string]string{offline: "client_offline"}},
		{"labels matching nobody", map[string]any{"labels": map[string]string{"room": "attic"}}, map[string]string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.body["command"] = "uname"
			body, _ := json.Marshal(tt.body)
			var got batchAnswer
			status, code := f.call(t, "POST", "/api/commands", string(body), &got)
			if status != http.StatusAccepted || code != "" || got.Total != len(tt.want) || len(got.Items) != len(tt.want) {
				t.Fatalf("batch = %d %q, %d items, total %d; want 202 with %d", status, code, len(got.Items), got.Total, len(tt.want))
			}
			if outcome := got.outcome(); !maps.Equal(outcome, tt.want) {
				t.Fatalf("outcomes %v, want %v", outcome, tt.want)
			}
			for _, it := range got.Items {
				if it.Error != nil && (it.Error.Message == "" || !strings.Contains(it.Error.Message, it.AgentID)) {
					t.Errorf("item %s: message %q does not name the agent", it.AgentID, it.Error.Message)
				}
			}
		})
	}
}

// TestBatchRefusedWhole: a batch over the target limit, with a bad
// selector or an invalid command is refused with one error, and nothing
// is stored.
func TestBatchRefusedWhole(t *testing.T) {
	f := newFixture(t)
	real := f.addAgents(t, 2, map[string]string{"fleet": "x"})
	tooMany := make([]string, 10001)
	for i := range tooMany {
		tooMany[i] = fmt.Sprintf("agt_nobody%06d", i)
	}
	tooManyReal := append(slices.Clone(tooMany[:9999]), real...)
	tests := []struct {
		name, path string
		body       any
		status     int
		code       string
	}{
		{"10,001 unknown ids", "", map[string]any{"client_ids": tooMany, "command": "uname"}, 413, "too_many_targets"},
		{"10,001 ids, some real", "", map[string]any{"client_ids": tooManyReal, "command": "uname", "queue_if_offline": true}, 413, "too_many_targets"},
		{"no selector", "", map[string]any{"command": "uname"}, 400, "invalid_selector"},
		{"empty labels", "", map[string]any{"labels": map[string]string{}, "command": "uname"}, 400, "invalid_selector"},
		{"empty id", "", map[string]any{"client_ids": []string{real[0], ""}, "command": "uname"}, 400, "invalid_selector"},
		{"empty command", "", map[string]any{"client_ids": real, "command": "", "queue_if_offline": true}, 400, "invalid_command"},
		{"timeout out of range", "", map[string]any{"labels": map[string]string{"fleet": "x"}, "command": "uname", "timeout": "9999h"}, 400, "invalid_command"},
		{"wait below 1s", "?wait=500ms", map[string]any{"client_ids": real, "command": "uname"}, 400, "invalid_query"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body, _ := json.Marshal(tt.body)
			if status, code := f.call(t, "POST", "/api/commands"+tt.path, string(body), nil); status != tt.status || code != tt.code {
				t.Fatalf("= %d %q, want %d %q", status, code, tt.status, tt.code)
			}
			if _, n, err := f.env.Store.ListCommands(t.Context(), fleet.CommandFilter{}); err != nil || n != 0 {
				t.Fatalf("%d commands stored, %v; want none", n, err)
			}
		})
	}
}

// TestBatchLabelsOverLimit: a label selector matching more agents than
// the batch limit is refused whole with 413 too_many_targets.
func TestBatchLabelsOverLimit(t *testing.T) {
	f := newFixture(t)
	f.addAgents(t, 10001, map[string]string{"fleet": "huge"})
	status, code := f.call(t, "POST", "/api/commands", `{"labels":{"fleet":"huge"},"command":"uname","queue_if_offline":true}`, nil)
	if status != http.StatusRequestEntityTooLarge || code != "too_many_targets" {
		t.Fatalf("= %d %q, want 413 too_many_targets", status, code)
	}
	if _, n, err := f.env.Store.ListCommands(t.Context(), fleet.CommandFilter{}); err != nil || n != 0 {
		t.Fatalf("%d commands stored, %v; want none", n, err)
	}
}
