package api_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/home-console/client-manager/internal/fleet"
	"github.com/home-console/client-manager/internal/httpjson"
)

// TestQueryParameters: every route refuses a parameter it does not take,
// a single-valued parameter given twice, invalid UTF-8 and an unknown
// enum value with 400 invalid_query and a message naming the problem;
// well-formed queries still answer.
func TestQueryParameters(t *testing.T) {
	f := newFixture(t)
	id := f.addAgents(t, 1, map[string]string{"fleet": "q"})[0]
	tests := []struct {
		method, path string
		status       int
		message      string // part of the error message; "" for success
	}{
		{"GET", "/api/commands?status=bogus", 400, `status "bogus" is not a command status; use queued, pending`},
		{"GET", "/api/commands?status=failed,", 400, `status "" is not a command status`},
		{"GET", "/api/commands?status=Failed", 400, `status "Failed" is not a command status`},
		{"GET", "/api/commands?status=failed,timed_out&client_id=" + id, 200, ""},
		{"GET", "/api/commands?stauts=failed", 400, `unknown query parameter "stauts"; GET /api/commands takes client_id, status,`},
		{"GET", "/api/commands?limit=5&limit=6", 400, "query parameter limit is given more than once"},
		{"GET", "/api/clients?include_revoked=yes", 400, "include_revoked must be true or false"},
		{"GET", "/api/clients?include_revoked=false&label=fleet=q&label=x=y", 200, ""},
		{"GET", "/api/clients?label=a=1&label=a=2", 400, `label "a" is given more than once`},
		{"GET", "/api/clients?status=online&status=offline", 400, "query parameter status is given more than once"},
		{"GET", "/api/clients?status=ONLINE", 400, "status must be online, offline or revoked"},
		{"GET", "/api/clients?q=%ff", 400, `query parameter "q" is not valid UTF-8`},
		{"GET", "/api/clients?a=1;b=2", 400, "query string is not valid"},
		{"GET", "/api/audit?Actor=x", 400, `unknown query parameter "Actor"`},
		{"GET", "/api/events?types=bogus", 400, `types entry "bogus" is not a prefix of any event type`},
		{"GET", "/api/events?types=command.,", 400, `types entry "" is not a prefix`},
		{"POST", "/api/tokens?role=admin", 400, `unknown query parameter "role"; POST /api/tokens takes none`},
		{"POST", "/api/commands/" + id + "/async?wait=5s", 400, `unknown query parameter "wait"; POST /api/commands/:id/async takes none`},
		{"DELETE", "/api/clients/" + id + "?revoke=yes", 400, "revoke must be true or false"},
		{"DELETE", "/api/clients/" + id + "?revoke=true&revoke=false", 400, "given more than once"},
	}
	for _, tt := range tests {
		status, code, msg := f.errorOf(t, tt.method, tt.path)
		wantCode := ""
		if tt.status == http.StatusBadRequest {
			wantCode = "invalid_query"
		}
		if status != tt.status || code != wantCode || !strings.Contains(msg, tt.message) {
			t.Errorf("%s %s = %d %s %q, want %d %s %q", tt.method, tt.path, status, code, msg, tt.status, wantCode, tt.message)
		}
	}
	var a fleet.Agent
	if status, _ := f.call(t, "GET", "/api/clients/"+id, "", &a); status != http.StatusOK || a.Revoked {
		t.Fatalf("agent after the refused deletes: %d %+v, want not revoked", status, a)
	}
}

// errorOf sends a request with an empty JSON object as body and returns
// the status, error code and message.
func (f *fixture) errorOf(t *testing.T, method, path string) (int, string, string) {
	t.Helper()
	req, err := http.NewRequest(method, f.base+path, strings.NewReader(`{}`))
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
	return res.StatusCode, e.Error.Code, e.Error.Message
}
