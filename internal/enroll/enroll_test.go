package enroll_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/home-console/client-manager/internal/syncbuf"

	"github.com/home-console/client-manager/internal/enroll"
	"github.com/home-console/client-manager/internal/events"
	"github.com/home-console/client-manager/internal/fleet"
	"github.com/home-console/client-manager/internal/sqlite"
	"github.com/home-console/client-manager/pkg/agentproto"
)

type fixture struct {
	store *sqlite.Store
	svc   *enroll.Service
	srv   *httptest.Server
	logs  *syncBuffer
	clock *clock
}

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// syncBuffer captures output written from several goroutines.
type syncBuffer = syncbuf.Buffer

func newFixture(t *testing.T, opts enroll.Options) *fixture {
	t.Helper()
	store, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "cm.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	f := &fixture{store: store, logs: &syncBuffer{}, clock: &clock{now: time.Now()}}
	opts.Now = f.clock.Now
	log := slog.New(slog.NewTextHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	f.svc = enroll.New(store, events.New(), log, opts)
	mux := http.NewServeMux()
	mux.Handle(agentproto.PathEnroll, f.svc.Handler())
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fixture) token(t *testing.T, uses int, ttl time.Duration) string {
	t.Helper()
	tok, _, err := f.svc.CreateToken(context.Background(), "t", uses, ttl, "tester")
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// post sends body to /api/enroll and returns the status, the error code
// (if any) and the enrollment response (if any).
func (f *fixture) post(t *testing.T, method, body string) (int, string, agentproto.EnrollResponse, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, f.srv.URL+agentproto.PathEnroll, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		agentproto.EnrollResponse
		Error struct{ Code, Message string } `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("decode: %v", err)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type = %q", ct)
	}
	return resp.StatusCode, out.Error.Code, out.EnrollResponse, resp.Header
}

func TestEnrollHappyPath(t *testing.T) {
	f := newFixture(t, enroll.Options{})
	tok := f.token(t, 2, time.Hour)
	status, code, resp, hdr := f.post(t, http.MethodPost, `{"token":"`+tok+`","name":"web-1","hostname":"web-1.lan","os":"linux","labels":{"role":"web"}}`)
	if status != http.StatusCreated || code != "" {
		t.Fatalf("status %d code %q", status, code)
	}
	if hdr.Get("Cache-Control") != "no-store" {
		t.Errorf("Cache-Control = %q", hdr.Get("Cache-Control"))
	}
	id, sec, err := agentproto.ParseCredential(resp.Credential)
	if err != nil || id != resp.AgentID || !strings.HasPrefix(id, "agt_") {
		t.Fatalf("credential %q for %q: %v", resp.Credential, resp.AgentID, err)
	}
	a, err := f.svc.Authenticate(context.Background(), resp.Credential)
	if err != nil || a.ID != id || a.Name != "web-1" || a.Labels["role"] != "web" {
		t.Fatalf("authenticate: %+v, %v", a, err)
	}
	hash, _, err := f.store.AgentSecretHash(context.Background(), id)
	if err != nil || bytes.Contains(hash, []byte(sec)) || len(hash) != 32 {
		t.Fatalf("stored hash %x: %v", hash, err)
	}
	if logs := f.logs.String(); strings.Contains(logs, sec) || strings.Contains(logs, tok) {
		t.Fatalf("a secret leaked into the logs:\n%s", logs)
	}
}

func TestEnrollRejectsBadTokens(t *testing.T) {
	f := newFixture(t, enroll.Options{})
	once := f.token(t, 1, 0)
	if status, _, _, _ := f.post(t, http.MethodPost, `{"token":"`+once+`"}`); status != http.StatusCreated {
		t.Fatalf("first use: %d", status)
	}
	expiring := f.token(t, 5, time.Minute)
	f.clock.Advance(2 * time.Minute)
	for name, tok := range map[string]string{
		"used up": once,
		"expired": expiring,
		"unknown": enroll.TokenPrefix + "nope",
		"foreign": "not-a-token",
	} {
		t.Run(name, func(t *testing.T) {
			status, code, _, _ := f.post(t, http.MethodPost, `{"token":"`+tok+`"}`)
			if status != http.StatusUnauthorized || code != "invalid_token" {
				t.Fatalf("got %d %q, want 401 invalid_token", status, code)
			}
		})
	}
}

func TestEnrollBadRequests(t *testing.T) {
	f := newFixture(t, enroll.Options{AttemptsPerMinute: 1000})
	tok := f.token(t, 10, 0)
	cases := []struct {
		name, method, body string
		status             int
		code               string
	}{
		{"bad json", http.MethodPost, `{"token":`, 400, "invalid_json"},
		{"empty body", http.MethodPost, ``, 400, "invalid_json"},
		{"unknown field", http.MethodPost, `{"token":"` + tok + `","admin":true}`, 400, "invalid_json"},
		{"trailing data", http.MethodPost, `{"token":"` + tok + `"} {}`, 400, "invalid_json"},
		{"duplicate token key", http.MethodPost, `{"token":"cmet_x","token":"` + tok + `"}`, 400, "invalid_json"},
		{"token in the wrong case", http.MethodPost, `{"Token":"` + tok + `"}`, 400, "invalid_json"},
		{"duplicate label", http.MethodPost, `{"token":"` + tok + `","labels":{"role":"web","role":"db"}}`, 400, "invalid_json"},
		{"invalid UTF-8 name", http.MethodPost, "{\"token\":\"" + tok + "\",\"name\":\"\xff\"}", 400, "invalid_json"},
		{"missing token", http.MethodPost, `{"name":"x"}`, 400, "invalid_request"},
		{"name too long", http.MethodPost, `{"token":"` + tok + `","name":"` + strings.Repeat("n", 200) + `"}`, 400, "invalid_request"},
		{"too large", http.MethodPost, `{"token":"` + tok + `","name":"` + strings.Repeat("x", enroll.MaxEnrollBody) + `"}`, 413, "body_too_large"},
		{"wrong method", http.MethodGet, ``, 405, "method_not_allowed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, code, _, _ := f.post(t, tc.method, tc.body)
			if status != tc.status || code != tc.code {
				t.Fatalf("got %d %q, want %d %q", status, code, tc.status, tc.code)
			}
		})
	}
	toks, err := f.store.ListEnrollmentTokens(context.Background())
	if err != nil || len(toks) != 1 || toks[0].UsesLeft != 10 {
		t.Fatalf("a bad request spent a token use: %+v, %v", toks, err)
	}
}

func TestEnrollRateLimitedPerIP(t *testing.T) {
	f := newFixture(t, enroll.Options{AttemptsPerMinute: 3})
	for range 3 {
		if status, _, _, _ := f.post(t, http.MethodPost, `{"token":"cmet_wrong"}`); status != http.StatusUnauthorized {
			t.Fatalf("attempt within the limit: %d", status)
		}
	}
	status, code, _, hdr := f.post(t, http.MethodPost, `{"token":"cmet_wrong"}`)
	if status != http.StatusTooManyRequests || code != "rate_limited" || hdr.Get("Retry-After") == "" {
		t.Fatalf("got %d %q Retry-After %q, want 429", status, code, hdr.Get("Retry-After"))
	}
	f.clock.Advance(time.Minute)
	if status, _, _, _ := f.post(t, http.MethodPost, `{"token":"cmet_wrong"}`); status != http.StatusUnauthorized {
		t.Fatalf("after the window: %d", status)
	}
}

func TestAuthenticate(t *testing.T) {
	f := newFixture(t, enroll.Options{})
	ctx := context.Background()
	resp, err := f.svc.Enroll(ctx, agentproto.EnrollRequest{Token: f.token(t, 1, 0)}, "10.0.0.1:5")
	if err != nil {
		t.Fatal(err)
	}
	for name, cred := range map[string]string{
		"malformed":     "garbage",
		"empty secret":  resp.AgentID + ".",
		"wrong secret":  resp.AgentID + ".wrong",
		"unknown agent": "agt_000000000000000000000000.secret",
	} {
		if _, err := f.svc.Authenticate(ctx, cred); !errors.Is(err, fleet.ErrCredentialInvalid) {
			t.Errorf("%s: got %v, want fleet.ErrCredentialInvalid", name, err)
		}
	}
	if err := f.svc.Revoke(ctx, resp.AgentID, "admin"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.Authenticate(ctx, resp.Credential); !errors.Is(err, fleet.ErrCredentialRevoked) {
		t.Fatalf("revoked: got %v", err)
	}
	if _, err := f.svc.Authenticate(ctx, resp.AgentID+".wrong"); !errors.Is(err, fleet.ErrCredentialInvalid) {
		t.Fatalf("a wrong secret must not reveal revocation: %v", err)
	}
	if err := f.svc.Revoke(ctx, "agt_nope", "admin"); !errors.Is(err, fleet.ErrNotFound) {
		t.Fatalf("revoke unknown: %v", err)
	}
}

func TestEnsureBootstrapToken(t *testing.T) {
	f := newFixture(t, enroll.Options{BootstrapUses: 2})
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "data")
	path, err := f.svc.EnsureBootstrapToken(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("bootstrap file mode: %v, %v", st, err)
	}
	raw, _ := os.ReadFile(path)
	tok := strings.TrimSpace(string(raw))
	if !strings.HasPrefix(tok, enroll.TokenPrefix) {
		t.Fatalf("file holds %q", tok)
	}
	if again, err := f.svc.EnsureBootstrapToken(ctx, dir); err != nil || again != path {
		t.Fatalf("second call: %q, %v", again, err)
	}
	if raw2, _ := os.ReadFile(path); !bytes.Equal(raw, raw2) {
		t.Fatal("an existing bootstrap file was rewritten")
	}
	toks, err := f.store.ListEnrollmentTokens(ctx)
	if err != nil || len(toks) != 1 || toks[0].UsesLeft != 2 || toks[0].ExpiresAt.IsZero() {
		t.Fatalf("tokens: %+v, %v", toks, err)
	}
	for range 2 {
		if status, _, _, _ := f.post(t, http.MethodPost, `{"token":"`+tok+`"}`); status != http.StatusCreated {
			t.Fatalf("enroll with the bootstrap token: %d", status)
		}
	}
	if _, err := f.svc.EnsureBootstrapToken(ctx, dir); err != nil {
		t.Fatal(err)
	}
	logs := f.logs.String()
	if strings.Contains(logs, tok) {
		t.Fatalf("bootstrap token leaked into the logs:\n%s", logs)
	}
	if !strings.Contains(logs, "can no longer enroll") {
		t.Fatalf("no warning about the used-up bootstrap token:\n%s", logs)
	}
}
