//go:build linux

package terminal

import (
	"context"
	"errors"
	"io"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/home-console/client-manager/internal/syncbuf"
)

// waitLong bounds every wait of these tests: generous, for a loaded machine.
const waitLong = 20 * time.Second

// term is an open session with its output collected by a reader goroutine.
type term struct {
	*Session
	out      syncbuf.Buffer
	readDone chan error
}

// shellConfig is an enabled configuration running /bin/sh.
func shellConfig() Config {
	return Config{Enabled: true, Shell: []string{"/bin/sh"}, KillGrace: 300 * time.Millisecond}
}

func newManager(t *testing.T, cfg Config) *Manager {
	t.Helper()
	m, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m
}

// openTerm opens a session on m and starts reading its output.
func openTerm(t *testing.T, m *Manager, req OpenRequest) *term {
	t.Helper()
	s, err := m.Open(context.Background(), req)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	tm := &term{Session: s, readDone: make(chan error, 1)}
	go func() {
		_, err := io.Copy(&tm.out, s)
		tm.readDone <- err
	}()
	t.Cleanup(func() { _ = s.Close() })
	return tm
}

// send writes input to the session.
func (tm *term) send(t *testing.T, input string) {
	t.Helper()
	if _, err := tm.Write([]byte(input)); err != nil {
		t.Fatalf("write %q: %v", input, err)
	}
}

// expect waits until the output matches re and returns the submatches of
// its last match.
func (tm *term) expect(t *testing.T, re string) []string {
	t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(waitLong)
	for time.Now().Before(deadline) {
		if m := rx.FindAllStringSubmatch(tm.out.String(), -1); m != nil {
			return m[len(m)-1]
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("output never matched %q; got:\n%s", re, tm.out.String())
	return nil
}

// expectPID waits for "<label>=<pid>" in the output.
func (tm *term) expectPID(t *testing.T, label string) int {
	t.Helper()
	pid, err := strconv.Atoi(tm.expect(t, `\b`+label+`=(\d+)`)[1])
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

// waitForeground waits until a process group other than the shell's is in
// the foreground (a command runs) or, with shell, until the shell's is.
func (tm *term) waitForeground(t *testing.T, shell bool) int {
	t.Helper()
	deadline := time.Now().Add(waitLong)
	for time.Now().Before(deadline) {
		fg, err := foreground(tm.pty)
		if err == nil && fg > 0 && (fg == tm.pid) == shell {
			return fg
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("foreground group never became the expected one (shell=%v)", shell)
	return 0
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	p, ok := readProc(pid)
	return ok && p.live()
}

// waitDone waits for the session to be over and returns Wait's answer.
func waitDone(t *testing.T, s *Session) (int, error) {
	t.Helper()
	select {
	case <-s.Done():
	case <-time.After(waitLong):
		t.Fatal("session never ended")
	}
	return s.Wait()
}

// codeOf is the stable code of a package error, "" for another error.
func codeOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code()
	}
	return ""
}
