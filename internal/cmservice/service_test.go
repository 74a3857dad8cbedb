package cmservice

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/home-console/client-manager/internal/enroll"
	"github.com/home-console/client-manager/pkg/agent"
	"github.com/home-console/client-manager/pkg/agentproto"
)

// env is a started Service with one enrolled, connected SDK agent.
type env struct {
	svc        *Service
	base       string
	agentID    string
	credential string
	cancel     context.CancelFunc
	done       chan error
	once       sync.Once
	err        error
}

func quietLog(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// startService starts a Service on a loopback port with a temp data dir.
func startService(t *testing.T, cfg Config) (*Service, string) {
	t.Helper()
	cfg.Host, cfg.Port = "127.0.0.1", 0
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	if cfg.MaxBodyBytes == 0 {
		cfg.MaxBodyBytes = 1 << 20
	}
	svc := New(cfg, quietLog(t))
	addr, err := svc.Start(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = svc.Stop(ctx, "test over")
	})
	return svc, "http://" + addr
}

// startAgent enrolls an SDK agent with the bootstrap token and runs it
// until the test ends; allowed lists its allow-list.
func startAgent(t *testing.T, svc *Service, base string, allowed ...string) *env {
	t.Helper()
	token, err := os.ReadFile(filepath.Join(svc.cfg.DataDir, enroll.BootstrapFile))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := agent.Enroll(t.Context(), base, agentproto.EnrollRequest{
		Token: strings.TrimSpace(string(token)), Name: "test-agent", Labels: map[string]string{"room": "lab"},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return runAgent(t, svc, base, resp, allowed...)
}

// runAgent runs an SDK agent with an existing identity until it is
// stopped or the test ends, and waits for it to be online.
func runAgent(t *testing.T, svc *Service, base string, id agentproto.EnrollResponse, allowed ...string) *env {
	t.Helper()
	a, err := agent.New(agent.Config{
		ServerURL: base, Credential: id.Credential, Allowed: allowed, Logger: quietLog(t),
		Facts: agentproto.Hello{Labels: map[string]string{"room": "lab"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e := &env{svc: svc, base: base, agentID: id.AgentID, credential: id.Credential, cancel: cancel, done: make(chan error, 1)}
	go func() { e.done <- a.Run(ctx) }()
	t.Cleanup(e.stop)
	eventually(t, 5*time.Second, "agent online", func() bool { return svc.app.hub.Online(id.AgentID) })
	return e
}

// stop stops the agent and waits for it; it may be called more than once.
func (e *env) stop() {
	e.once.Do(func() {
		e.cancel()
		e.err = <-e.done
	})
}

func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// call sends a request and decodes the JSON answer.
func call(t *testing.T, method, url, body string, headers ...string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	var out map[string]any
	if len(bytes.TrimSpace(raw)) > 0 {
		if err := json.Unmarshal(raw, &out); err != nil {
			t.Fatalf("%s %s: non-JSON answer %d: %s", method, url, res.StatusCode, raw)
		}
	}
	return res.StatusCode, out
}

func errCode(body map[string]any) string {
	e, _ := body["error"].(map[string]any)
	s, _ := e["code"].(string)
	return s
}
