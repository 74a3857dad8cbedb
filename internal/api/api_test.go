package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/home-console/client-manager/internal/access"
	"github.com/home-console/client-manager/internal/api"
	"github.com/home-console/client-manager/internal/dispatch"
	"github.com/home-console/client-manager/internal/fleet"
	"github.com/home-console/client-manager/internal/httpjson"
	"github.com/home-console/client-manager/internal/hub"
	"github.com/home-console/client-manager/internal/hub/hubtest"
	"github.com/home-console/client-manager/internal/ratelimit"
)

// fixture is the operator API over the real stack: SQLite store, hub,
// enrollment and dispatch, served on a loopback port with no operator
// token (so the caller is the loopback admin).
type fixture struct {
	env  *hubtest.Env
	base string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	return newFixtureWith(t, nil, nil)
}

// newFixtureWith is newFixture with the store of the API and of dispatch
// wrapped by wrap (if not nil), e.g. to fail writes (enrollment and the
// hub use the real store), and the api.Server changed by set (if not nil)
// before it serves.
func newFixtureWith(t *testing.T, wrap func(fleet.Store) fleet.Store, set func(*api.Server)) *fixture {
	t.Helper()
	env := hubtest.Start(t, hub.Config{})
	var store fleet.Store = env.Store
	if wrap != nil {
		store = wrap(env.Store)
	}
	d := dispatch.New(store, env.Hub, env.Bus, env.Log, dispatch.Config{})
	env.Hub.SetCommandSink(d)
	if err := d.Recover(t.Context()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { d.Run(ctx) })
	srv := &api.Server{
		Store: store, Presence: presence{env.Hub}, Commands: d, Enrollment: env.Enroll, Bus: env.Bus,
		Tokens: &access.StoreTokens{Store: env.Store}, Policy: access.CommandPolicy{Operator: []string{"uname"}},
		Log: env.Log, MaxBodyBytes: 1 << 20, Limiter: ratelimit.New(1e6, 1e6, 0),
	}
	wg.Go(func() { srv.RetryAudit(ctx, 20*time.Millisecond) })
	if set != nil {
		set(srv)
	}
	r := httpjson.NewEngine()
	srv.Register(r)
	ts := httptest.NewServer(r)
	t.Cleanup(func() {
		ts.Close()
		cancel()
		wg.Wait()
	})
	return &fixture{env: env, base: ts.URL}
}

// presence adapts the hub to api.Presence, as internal/cmservice does.
type presence struct{ *hub.Hub }

func (p presence) ConnectedSince(id string) (time.Time, bool) {
	s, ok := p.Session(id)
	return s.ConnectedAt, ok
}

func (p presence) Disconnect(id string, code int, reason string) bool {
	return p.Hub.Disconnect(id, websocket.StatusCode(code), reason)
}

// call sends a request with headers (name, value pairs) and decodes the
// JSON answer into out (if not nil); it returns the status and error code.
func (f *fixture) call(t *testing.T, method, path, body string, out any, headers ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, f.base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	var e httpjson.ErrorBody
	_ = json.Unmarshal(raw, &e)
	if out != nil && e.Error.Code == "" {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s %s: %d %.300s: %v", method, path, res.StatusCode, raw, err)
		}
	}
	return res.StatusCode, e.Error.Code
}

// addAgents stores n agents with labels directly in the store (they are
// offline) and returns their ids.
func (f *fixture) addAgents(t *testing.T, n int, labels map[string]string) []string {
	t.Helper()
	ids := make([]string, n)
	start := time.Now()
	for i := range ids {
		ids[i] = fmt.Sprintf("agt_%s%06d", labels["fleet"], i)
		a := fleet.Agent{ID: ids[i], Name: ids[i], Labels: labels, FirstSeen: start.Add(time.Duration(i))}
		if err := f.env.Store.CreateAgent(t.Context(), a, []byte("h")); err != nil {
			t.Fatal(err)
		}
	}
	return ids
}

// batchAnswer is the answer to POST /api/commands.
type batchAnswer struct {
	BatchID string `json:"batch_id"`
	Total   int    `json:"total"`
	Items   []struct {
		AgentID string                `json:"client_id"`
		Command *fleet.Command        `json:"command"`
		Error   *httpjson.ErrorDetail `json:"error"`
	} `json:"items"`
}

// outcome is an item's command status or error code.
func (b batchAnswer) outcome() map[string]string {
	m := make(map[string]string, len(b.Items))
	for _, it := range b.Items {
		switch {
		case it.Command != nil && it.Error == nil:
			m[it.AgentID] = string(it.Command.Status)
		case it.Error != nil && it.Command == nil:
			m[it.AgentID] = it.Error.Code
		default:
			m[it.AgentID] = "malformed item"
		}
	}
	return m
}
