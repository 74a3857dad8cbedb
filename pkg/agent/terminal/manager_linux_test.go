//go:build linux

package terminal

import (
	"context"
	"errors"
	"os"
	"os/user"
	"testing"
	"time"
)

func TestDisabledRefuses(t *testing.T) {
	m := newManager(t, Config{Shell: []string{"/bin/sh"}})
	_, err := m.Open(context.Background(), OpenRequest{})
	if !errors.Is(err, ErrDisabled) || codeOf(err) != "terminal_disabled" {
		t.Fatalf("Open on a disabled manager = %v (code %q), want ErrDisabled", err, codeOf(err))
	}
}

func TestConfigRefused(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"no shell", Config{Enabled: true}},
		{"relative shell", Config{Enabled: true, Shell: []string{"sh"}}},
		{"relative dir", Config{Enabled: true, Shell: []string{"/bin/sh"}, Dir: "tmp"}},
		{"unknown user", Config{Enabled: true, Shell: []string{"/bin/sh"}, User: "cm-no-such-user"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(tc.cfg); err == nil {
				t.Fatal("New accepted the configuration")
			}
		})
	}
}

func TestBadOpenRequest(t *testing.T) {
	m := newManager(t, shellConfig())
	for _, req := range []OpenRequest{
		{Term: "xterm; rm -rf /"},
		{Term: string(make([]byte, 65))},
		{Cols: MaxDimension + 1},
		{Rows: -1},
	} {
		if _, err := m.Open(context.Background(), req); !errors.Is(err, ErrBadRequest) || codeOf(err) != "terminal_bad_request" {
			t.Errorf("Open(%+v) = %v, want ErrBadRequest", req, err)
		}
	}
	if n := m.Sessions(); n != 0 {
		t.Errorf("%d sessions after refused opens", n)
	}
}

func TestMaxSessions(t *testing.T) {
	cfg := shellConfig()
	cfg.MaxSessions = 2
	m := newManager(t, cfg)
	first := openTerm(t, m, OpenRequest{})
	openTerm(t, m, OpenRequest{})
	if _, err := m.Open(context.Background(), OpenRequest{}); !errors.Is(err, ErrTooManySessions) || codeOf(err) != "terminal_limit" {
		t.Fatalf("third Open = %v, want ErrTooManySessions", err)
	}
	_ = first.Close()
	tm := openTerm(t, m, OpenRequest{})
	tm.send(t, "echo again-$((2+2))\n")
	tm.expect(t, `again-4`)
}

func TestManagerClose(t *testing.T) {
	m := newManager(t, shellConfig())
	a, b := openTerm(t, m, OpenRequest{}), openTerm(t, m, OpenRequest{})
	start := time.Now()
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("Manager.Close took %v", time.Since(start))
	for _, tm := range []*term{a, b} {
		select {
		case <-tm.Done():
		default:
			t.Error("a session outlived Manager.Close")
		}
		checkGone(t, []int{tm.pid})
	}
	if _, err := m.Open(context.Background(), OpenRequest{}); !errors.Is(err, ErrClosed) {
		t.Errorf("Open after Close = %v, want ErrClosed", err)
	}
}

func TestRunAsUser(t *testing.T) {
	u, err := user.Lookup("nobody")
	if os.Geteuid() != 0 || err != nil {
		t.Skip("needs root and a user nobody")
	}
	cfg := shellConfig()
	cfg.User = "nobody"
	tm := openTerm(t, newManager(t, cfg), OpenRequest{})
	tm.send(t, "echo id=$(id -u):$(id -g) user=$USER\n")
	tm.expect(t, `id=`+u.Uid+`:`+u.Gid+` user=nobody`)
}
