package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/home-console/client-manager/internal/fleet"
	"github.com/home-console/client-manager/internal/httpjson"
	"github.com/home-console/client-manager/internal/hub/hubtest"
)

// refusing is a store whose audit writes can be refused as a full disk
// refuses them (fleet.ErrStorageUnavailable).
type refusing struct {
	fleet.Store
	appends, finishes atomic.Bool // refuse AppendAudit, FinishAudit
}

func diskFull(what string) error {
	return fmt.Errorf("sqlite: %s: %w", what, &fleet.Error{
		Code: fleet.CodeStorageUnavailable, Message: "storage unavailable: the disk holding the store is full (SQLITE_FULL)"})
}

func (r *refusing) AppendAudit(ctx context.Context, e fleet.AuditEntry) (int64, error) {
	if r.appends.Load() {
		return 0, diskFull("append audit")
	}
	return r.Store.AppendAudit(ctx, e)
}

func (r *refusing) FinishAudit(ctx context.Context, id int64, result, detail string) error {
	if r.finishes.Load() {
		return diskFull("finish audit")
	}
	return r.Store.FinishAudit(ctx, id, result, detail)
}

func startRefusing(t *testing.T) (*fixture, *refusing) {
	t.Helper()
	r := &refusing{}
	f := newFixtureWith(t, func(s fleet.Store) fleet.Store {
		r.Store = s
		return r
	}, nil)
	return f, r
}

// TestNoActionWithoutItsAuditEntry: while the store refuses audit
// entries, state-changing requests answer 503 storage_unavailable with
// the store's reason and Retry-After, and do nothing; reads still work.
func TestNoActionWithoutItsAuditEntry(t *testing.T) {
	f, r := startRefusing(t)
	agent := f.addAgents(t, 1, map[string]string{"fleet": "a"})[0]
	r.appends.Store(true)
	for _, req := range []struct{ method, path, body string }{
		{"POST", "/api/enrollment-tokens", `{"uses":1}`},
		{"POST", "/api/tokens", `{"name":"x","role":"admin"}`},
		{"POST", "/api/commands/" + agent, `{"command":"uname","queue_if_offline":true}`},
		{"DELETE", "/api/clients/" + agent + "?revoke=true", ""},
	} {
		res := f.raw(t, req.method, req.path, req.body)
		if res.status != http.StatusServiceUnavailable || res.code != "storage_unavailable" ||
			!strings.Contains(res.message, "audit entry cannot be written") || !strings.Contains(res.message, "SQLITE_FULL") ||
			res.retryAfter == "" {
			t.Errorf("%s %s = %+v, want 503 storage_unavailable naming the audit entry and the reason, with Retry-After", req.method, req.path, res)
		}
	}
	if status, code := f.call(t, "GET", "/api/clients", "", nil); status != http.StatusOK {
		t.Fatalf("GET /api/clients while audit writes fail = %d %s", status, code)
	}
	r.appends.Store(false)
	var tokens struct{ Items []fleet.EnrollmentToken }
	if status, _ := f.call(t, "GET", "/api/enrollment-tokens", "", &tokens); status != http.StatusOK || len(tokens.Items) != 0 {
		t.Errorf("enrollment tokens after the refused request: %d %+v", status, tokens)
	}
	var commands struct{ Total int }
	if status, _ := f.call(t, "GET", "/api/commands", "", &commands); status != http.StatusOK || commands.Total != 0 {
		t.Errorf("commands after the refused request: %d %+v", status, commands)
	}
	if a, err := f.env.Store.Agent(t.Context(), agent); err != nil || a.Revoked {
		t.Errorf("agent after the refused revoke: %+v, %v", a, err)
	}
}

// TestAuditOutcomeWaitsForTheStore: a request that acted while the store
// refused to finish its audit entry keeps the entry (pending); the
// outcome is written once the store takes writes again.
func TestAuditOutcomeWaitsForTheStore(t *testing.T) {
	f, r := startRefusing(t)
	r.finishes.Store(true)
	if status, code := f.call(t, "POST", "/api/enrollment-tokens", `{"uses":1}`, nil); status != http.StatusCreated {
		t.Fatalf("create token = %d %s", status, code)
	}
	entries := f.audit(t)
	if len(entries) != 1 || entries[0].Result != fleet.AuditPending {
		t.Fatalf("audit while finishes fail: %+v; want one pending entry", entries)
	}
	r.finishes.Store(false)
	hubtest.Eventually(t, 10*time.Second, "the audit outcome recorded", func() bool {
		e := f.audit(t)
		return len(e) == 1 && e[0].Result == "201"
	})
}

// audit returns the audit log, newest first.
func (f *fixture) audit(t *testing.T) []fleet.AuditEntry {
	t.Helper()
	var page struct{ Items []fleet.AuditEntry }
	if status, code := f.call(t, "GET", "/api/audit?limit=1000", "", &page); status != http.StatusOK {
		t.Fatalf("GET /api/audit = %d %s", status, code)
	}
	return page.Items
}

// answer is an error answer as raw returns it.
type answer struct {
	status        int
	code, message string
	retryAfter    string
}

// raw sends a request and returns its status, error code and message,
// and Retry-After.
func (f *fixture) raw(t *testing.T, method, path, body string) answer {
	t.Helper()
	req, err := http.NewRequest(method, f.base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	var e httpjson.ErrorBody
	_ = json.Unmarshal(raw, &e)
	return answer{res.StatusCode, e.Error.Code, e.Error.Message, res.Header.Get("Retry-After")}
}
