package api_test

import (
	"net"
	"net/http"
	"strconv"
	"testing"

	"github.com/home-console/client-manager/internal/fleet"
)

// TestAuditEntriesHaveOneShape: operator requests, refused ones
// included, and enrollments all record the HTTP status as result, a
// role, and the caller's IP without a port; a command refused by the
// policy records its argv like an allowed one.
func TestAuditEntriesHaveOneShape(t *testing.T) {
	f := newFixture(t)
	var admin, operator struct{ Token string }
	if status, code := f.call(t, "POST", "/api/tokens", `{"name":"admin","role":"admin"}`, &admin); status != http.StatusCreated {
		t.Fatalf("create admin token = %d %s", status, code)
	}
	as := func(token string) []string { return []string{"Authorization", "Bearer " + token} }
	if status, code := f.call(t, "POST", "/api/tokens", `{"name":"op","role":"operator"}`, &operator, as(admin.Token)...); status != http.StatusCreated {
		t.Fatalf("create operator token = %d %s", status, code)
	}
	agent, _ := f.env.NewAgent(t, "a") // an enrollment, audited by the enrollment service
	requests := []struct {
		path, body, token string
		status            int
		detail            string
	}{
		{"/api/commands/" + agent, `{"command":"rm","args":["-rf","/"]}`, operator.Token, http.StatusForbidden, `"rm" "-rf" "/"`},
		{"/api/commands", `{"client_ids":["` + agent + `"],"command":"reboot"}`, operator.Token, http.StatusForbidden, `"reboot"`},
		{"/api/commands/" + agent, `{"command":"uname","args":["-a"]}`, operator.Token, http.StatusConflict, `"uname" "-a"`},
		{"/api/tokens", `{"name":"x","role":"admin"}`, "", http.StatusUnauthorized, ""},
	}
	for _, r := range requests {
		var headers []string
		if r.token != "" {
			headers = as(r.token)
		}
		if status, code := f.call(t, "POST", r.path, r.body, nil, headers...); status != r.status {
			t.Fatalf("POST %s = %d %s, want %d", r.path, status, code, r.status)
		}
	}

	var audit struct{ Items []fleet.AuditEntry }
	if status, code := f.call(t, "GET", "/api/audit?limit=1000", "", &audit, as(admin.Token)...); status != http.StatusOK {
		t.Fatalf("audit = %d %s", status, code)
	}
	if len(audit.Items) != len(requests)+3 {
		t.Fatalf("%d audit entries, want %d: %+v", len(audit.Items), len(requests)+3, audit.Items)
	}
	details := map[string]string{}
	for _, e := range audit.Items {
		status, err := strconv.Atoi(e.Result)
		if err != nil || status < 100 || status > 599 || e.Role == "" || net.ParseIP(e.Source) == nil {
			t.Errorf("entry %+v: want an HTTP status as result, a role, and an IP without port as source", e)
		}
		if e.Action == "agent.enroll" && (e.Result != "201" || e.Role != "enrollment" || e.Target != agent) {
			t.Errorf("enrollment entry %+v", e)
		}
		if e.Actor == "anonymous" && (e.Role != "none" || e.Result != "401") {
			t.Errorf("unauthenticated entry %+v", e)
		}
		if e.Actor == "op" {
			details[e.Detail] = e.Result
		}
	}
	for _, r := range requests[:3] {
		if details[r.detail] != strconv.Itoa(r.status) {
			t.Errorf("no entry of op with detail %s and result %d in %v", r.detail, r.status, details)
		}
	}
}
