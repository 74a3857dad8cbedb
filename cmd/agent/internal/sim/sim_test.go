package sim

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/home-console/client-manager/cmd/agent/internal/testserver"
	"github.com/home-console/client-manager/pkg/agent"
	"github.com/home-console/client-manager/pkg/agentproto"
)

func TestRunner(t *testing.T) {
	r := &Runner{}
	var out bytes.Buffer
	if code, err := r.Run(context.Background(), agent.Command{ID: "c1", Name: "echo", Args: []string{"a", "b"}}, &out, nil); code != 0 || err != nil || out.String() != "a b\n" {
		t.Errorf("echo: %d %v %q", code, err, out.String())
	}
	if code, _ := r.Run(context.Background(), agent.Command{ID: "c2", Name: "false"}, &out, nil); code != 1 {
		t.Errorf("false: %d", code)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if code, err := r.Run(ctx, agent.Command{ID: "c3", Name: "sleep", Args: []string{"30"}}, &out, nil); code != -1 || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("sleep past its timeout: %d %v", code, err)
	}
	if r.Handled() != 3 || r.Duplicates() != 0 {
		t.Errorf("handled %d, duplicates %d", r.Handled(), r.Duplicates())
	}
	_, _ = r.Run(context.Background(), agent.Command{ID: "c1", Name: "true"}, &out, nil)
	if r.Duplicates() != 1 {
		t.Errorf("a repeated id was not counted: duplicates %d", r.Duplicates())
	}
}

func TestLoadCredentials(t *testing.T) {
	path := filepath.Join(t.TempDir(), "creds.jsonl")
	if creds, err := LoadCredentials(path); err != nil || creds != nil {
		t.Errorf("missing file: %v %v", creds, err)
	}
	os.WriteFile(path, []byte(`{"name":"sim-00000","agent_id":"a","credential":"a.s"}`+"\n\n"+`{"name":"x","credential":"bad"}`+"\n"), 0o600)
	if _, err := LoadCredentials(path); err == nil || !strings.Contains(err.Error(), ":3:") {
		t.Errorf("bad line: %v", err)
	}
}

func TestSimulationEnrollsOnceRunsAgentsAndCommands(t *testing.T) {
	srv := testserver.New(t)
	credFile := filepath.Join(t.TempDir(), "creds.jsonl")
	cfg := Config{
		Server: srv.URL, EnrollToken: srv.Token, Count: 30, CredentialsFile: credFile,
		ConnectRate: 500, HeartbeatInterval: 50 * time.Millisecond, HeartbeatTick: 10 * time.Millisecond,
		Allowed: []string{"echo"}, MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond,
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan Summary, 1)
	go func() {
		sum, err := Run(ctx, cfg)
		if err != nil {
			t.Errorf("Run: %v", err)
		}
		done <- sum
	}()
	srv.WaitConnected(t, 30, 10*time.Second)
	for _, id := range []string{"ag1", "ag30"} {
		srv.Send(id, agentproto.TypeCommandRequest, agentproto.CommandRequest{CommandID: "c-" + id, Command: "echo", Args: []string{id}})
		if res := <-srv.Results(); res.Status != agentproto.ResultCompleted || !strings.HasPrefix(res.Stdout, "ag") {
			t.Errorf("result %+v", res)
		}
	}
	time.Sleep(200 * time.Millisecond) // a few shared heartbeats
	cancel()
	sum := <-done
	if sum.Agents != 30 || sum.Enrolled != 30 || sum.ConnectedPeak != 30 || sum.ConnectedAtEnd != 30 ||
		sum.Commands != 2 || sum.Reconnects != 0 || sum.Stopped != 0 || sum.AllConnectedS <= 0 {
		t.Errorf("summary %+v", sum)
	}
	if fi, err := os.Stat(credFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("credentials file: %v %v", fi, err)
	}

	cfg.Duration = 300 * time.Millisecond
	sum, err := Run(context.Background(), cfg)
	if err != nil || sum.Enrolled != 0 || srv.Enrolled() != 30 {
		t.Errorf("second run enrolled %d (server %d), err %v; want the stored credentials reused", sum.Enrolled, srv.Enrolled(), err)
	}
}

func TestSimulationNeedsTokenForMissingCredentials(t *testing.T) {
	srv := testserver.New(t)
	_, err := Run(context.Background(), Config{Server: srv.URL, Count: 1, CredentialsFile: filepath.Join(t.TempDir(), "c.jsonl")})
	if err == nil || !strings.Contains(err.Error(), "enrollment token") {
		t.Errorf("err = %v", err)
	}
}
