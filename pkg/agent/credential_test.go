package agent

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/home-console/client-manager/pkg/agentproto"
)

func TestCredentialFileRoundTripAndMode(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state", "cm-agent")
	path := filepath.Join(dir, "credential.json")
	if _, err := LoadCredential(path); !errors.Is(err, ErrNoCredential) || !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
	want := StoredCredential{Server: "http://cm:10000", AgentID: "ag1", Credential: "ag1.secret"}
	if err := SaveCredential(path, want); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("credential file mode %o, want 600", fi.Mode().Perm())
	}
	if di, _ := os.Stat(dir); di.Mode().Perm() != 0o700 {
		t.Errorf("credential dir mode %o, want 700", di.Mode().Perm())
	}
	got, err := LoadCredential(path)
	if err != nil || got != want {
		t.Fatalf("LoadCredential = %+v, %v", got, err)
	}
	want.Credential = "ag1.rotated"
	if err := SaveCredential(path, want); err != nil {
		t.Fatal(err)
	}
	if got, _ := LoadCredential(path); got != want {
		t.Errorf("overwrite: %+v", got)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("temporary files left behind: %v", entries)
	}
	os.WriteFile(path, []byte(`{"agent_id":"x","credential":"nodot"}`), 0o600)
	if _, err := LoadCredential(path); !errors.Is(err, agentproto.ErrMalformedCredential) {
		t.Errorf("malformed credential: %v", err)
	}
}

func TestEnroll(t *testing.T) {
	var got agentproto.EnrollRequest
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/prefix/api/enroll" {
			http.Error(w, "wrong endpoint "+r.Method+" "+r.URL.Path, http.StatusNotFound)
			return
		}
		json.NewDecoder(r.Body).Decode(&got)
		w.Header().Set("Content-Type", "application/json")
		switch got.Token {
		case "good":
			w.WriteHeader(http.StatusCreated)
			json.NewEncoder(w).Encode(agentproto.EnrollResponse{AgentID: "ag7", Credential: "ag7.s3cret"})
		case "slow":
			w.Header().Set("Retry-After", "12")
			w.WriteHeader(http.StatusTooManyRequests)
			w.Write([]byte(`{"error":{"code":"rate_limited","message":"too many enrollments"}}`))
		default:
			w.WriteHeader(http.StatusUnauthorized)
			w.Write([]byte(`{"error":{"code":"invalid_token","message":"enrollment token is invalid or expired"}}`))
		}
	}))
	defer srv.Close()
	ctx := context.Background()
	req := agentproto.EnrollRequest{Token: "good", Name: "web-1", Labels: map[string]string{"role": "web"}}
	resp, err := Enroll(ctx, srv.URL+"/prefix", req, nil)
	if err != nil || resp.AgentID != "ag7" || resp.Credential != "ag7.s3cret" {
		t.Fatalf("Enroll = %+v, %v", resp, err)
	}
	if got.Name != "web-1" || got.Labels["role"] != "web" {
		t.Errorf("server got %+v", got)
	}
	_, err = Enroll(ctx, srv.URL+"/prefix", agentproto.EnrollRequest{Token: "bad"}, nil)
	var se *ServerError
	if !errors.As(err, &se) || se.StatusCode != 401 || se.Code != "invalid_token" || !errors.Is(err, ErrUnauthorized) {
		t.Errorf("bad token: %v", err)
	}
	_, err = Enroll(ctx, srv.URL+"/prefix", agentproto.EnrollRequest{Token: "slow"}, nil)
	if !errors.As(err, &se) || se.StatusCode != 429 || se.RetryAfter.Seconds() != 12 || errors.Is(err, ErrUnauthorized) {
		t.Errorf("rate limited: %v", err)
	}
	if _, err := Enroll(ctx, "ftp://x", req, nil); !errors.Is(err, errBadServerURL) {
		t.Errorf("bad URL: %v", err)
	}
}

func TestEndpointURL(t *testing.T) {
	tests := []struct{ base, want string }{
		{"http://h:10000", "http://h:10000/ws"},
		{"http://h:10000/", "http://h:10000/ws"},
		{"https://h/client-manager", "https://h/client-manager/ws"},
		{"ws://h:1", "http://h:1/ws"},
		{"wss://h/p/", "https://h/p/ws"},
	}
	for _, tt := range tests {
		if got, err := endpointURL(tt.base, agentproto.PathWebSocket); err != nil || got != tt.want {
			t.Errorf("endpointURL(%q) = %q, %v; want %q", tt.base, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "h:10000", "ftp://h", "http://", "://x"} {
		if _, err := endpointURL(bad, "/ws"); err == nil {
			t.Errorf("endpointURL(%q) accepted", bad)
		}
	}
}
