package enroll_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/home-console/client-manager/internal/enroll"
	"github.com/home-console/client-manager/internal/events"
	"github.com/home-console/client-manager/internal/fleet"
	"github.com/home-console/client-manager/internal/origin"
	"github.com/home-console/client-manager/pkg/agentproto"
)

// TestEnrollRefusesForeignOrigins: POST /api/enroll applies the origin
// rule of the operator API: a browser page of another origin than
// Options.Origins allows gets 403 origin_not_allowed and spends nothing.
func TestEnrollRefusesForeignOrigins(t *testing.T) {
	allowed, err := origin.New([]string{"console.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, enroll.Options{Origins: allowed})
	tok := f.token(t, 3, time.Hour)
	tests := []struct {
		origin string
		status int
		code   string
	}{
		{"https://evil.example", http.StatusForbidden, origin.Code},
		{"null", http.StatusForbidden, origin.Code},
		{"https://console.example.com", http.StatusCreated, ""},
		{"", http.StatusCreated, ""}, // agents send no Origin
	}
	for _, tt := range tests {
		req, err := http.NewRequest(http.MethodPost, f.srv.URL+agentproto.PathEnroll, strings.NewReader(`{"token":"`+tok+`"}`))
		if err != nil {
			t.Fatal(err)
		}
		if tt.origin != "" {
			req.Header.Set("Origin", tt.origin)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		code := errorCode(t, resp)
		if resp.StatusCode != tt.status || code != tt.code {
			t.Errorf("Origin %q: %d %q, want %d %q", tt.origin, resp.StatusCode, code, tt.status, tt.code)
		}
	}
	if _, n, _ := f.store.ListAgents(context.Background(), fleet.AgentFilter{}); n != 2 {
		t.Errorf("%d agents enrolled, want 2 (the refused requests must not spend the token)", n)
	}
}

// TestEnrollAuditEntry: an enrollment's audit entry has the shape of the
// operator API's: result is the HTTP status, role is filled, source is an
// address without a port.
func TestEnrollAuditEntry(t *testing.T) {
	f := newFixture(t, enroll.Options{})
	status, _, resp, _ := f.post(t, http.MethodPost, `{"token":"`+f.token(t, 1, time.Hour)+`","name":"a"}`)
	if status != http.StatusCreated {
		t.Fatalf("enroll = %d", status)
	}
	entries, _, err := f.store.ListAudit(context.Background(), fleet.AuditFilter{Action: "agent.enroll"})
	if err != nil || len(entries) != 1 {
		t.Fatalf("audit = %v, %v", entries, err)
	}
	e := entries[0]
	if e.Result != "201" || e.Role != enroll.AuditRole || e.Source != "127.0.0.1" || e.Target != resp.AgentID ||
		!strings.HasPrefix(e.Actor, "enrollment-token:tok_") {
		t.Fatalf("audit entry %+v, want result 201, role %s, source 127.0.0.1, target %s", e, enroll.AuditRole, resp.AgentID)
	}
}

// errorCode reads and closes resp's body and returns its JSON error code.
func errorCode(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	var body struct {
		Error struct{ Code string } `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("decode: %v", err)
	}
	return body.Error.Code
}

// fullStore refuses enrollments as a store on a full disk does.
type fullStore struct{ fleet.Store }

func (fullStore) EnrollAgent(context.Context, fleet.Enrollment) (fleet.EnrollmentToken, error) {
	return fleet.EnrollmentToken{}, fmt.Errorf("sqlite: enroll agent: %w", &fleet.Error{
		Code: fleet.CodeStorageUnavailable, Message: "storage unavailable: the disk holding the store is full (SQLITE_FULL)"})
}

// TestEnrollOnAFullDisk: an enrollment the store refuses answers 503
// storage_unavailable with the reason and Retry-After, not 500.
func TestEnrollOnAFullDisk(t *testing.T) {
	f := newFixture(t, enroll.Options{})
	svc := enroll.New(fullStore{f.store}, events.New(), slog.New(slog.DiscardHandler), enroll.Options{})
	srv := httptest.NewServer(svc.Handler())
	t.Cleanup(srv.Close)
	resp, err := http.Post(srv.URL, "application/json", strings.NewReader(`{"token":"`+f.token(t, 1, time.Hour)+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Error struct{ Code, Message string }
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusServiceUnavailable || body.Error.Code != "storage_unavailable" ||
		!strings.Contains(body.Error.Message, "SQLITE_FULL") || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("enroll on a full disk = %d %+v (Retry-After %q)", resp.StatusCode, body.Error, resp.Header.Get("Retry-After"))
	}
}
