package terminal

import (
	"context"
	"fmt"
	"os/exec"
	"sync"
	"time"
)

// Manager opens the terminal sessions of one agent under its [Config] and
// bounds how many run at once. It is safe for concurrent use.
type Manager struct {
	cfg Config
	id  identity
	env []string
	dir string

	mu       sync.Mutex
	sessions map[*Session]struct{}
	reserved int // slots taken by sessions being started
	closed   bool
}

// New validates cfg, fills in its defaults and returns a Manager. With
// cfg.Enabled it resolves cfg.User now, so that a misconfigured agent fails
// at start rather than at the first session.
func New(cfg Config) (*Manager, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	m := &Manager{cfg: cfg, sessions: map[*Session]struct{}{}}
	if !cfg.Enabled {
		return m, nil
	}
	if m.id, err = lookupIdentity(cfg.User); err != nil {
		return nil, err
	}
	m.env = environment(m.id.home, m.id.name, cfg.Shell[0])
	m.dir = workDir(cfg.Dir, m.id.home)
	return m, nil
}

// Config returns the manager's configuration with its defaults filled in.
func (m *Manager) Config() Config { return m.cfg }

// Open starts a session: the configured shell on a new PTY of the
// requested size, with TERM from req. It returns [ErrDisabled] when the
// configuration does not enable terminals, [ErrTooManySessions] at
// [Config.MaxSessions], an error wrapping [ErrBadRequest] for an invalid
// req, [ErrClosed] after [Manager.Close], an error wrapping [ErrStart] when
// the shell cannot start, or ctx's error if ctx is done first. ctx bounds
// only the start: the session lives until it ends on its own or is closed.
func (m *Manager) Open(ctx context.Context, req OpenRequest) (*Session, error) {
	if !m.cfg.Enabled {
		return nil, ErrDisabled
	}
	req, err := req.normalize()
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := m.reserve(); err != nil {
		return nil, err
	}
	s, err := m.start(req)
	m.mu.Lock()
	m.reserved--
	closed := m.closed
	if err == nil {
		m.sessions[s] = struct{}{}
	}
	m.mu.Unlock()
	if err != nil {
		return nil, err
	}
	go s.supervise()
	if closed { // Manager.Close ran while the shell was starting
		_ = s.Close()
		return nil, ErrClosed
	}
	return s, nil
}

// reserve takes a session slot or says why there is none.
func (m *Manager) reserve() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case m.closed:
		return ErrClosed
	case len(m.sessions)+m.reserved >= m.cfg.MaxSessions:
		return ErrTooManySessions
	}
	m.reserved++
	return nil
}

// start runs the shell on a new PTY.
func (m *Manager) start(req OpenRequest) (*Session, error) {
	cmd := exec.Command(m.cfg.Shell[0], m.cfg.Shell[1:]...)
	cmd.Env = append(append([]string(nil), m.env...), "TERM="+req.Term)
	cmd.Dir = m.dir
	f, err := startPTY(cmd, m.id, req.Cols, req.Rows)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrStart, m.cfg.Shell[0], err)
	}
	s := &Session{
		m:      m,
		cmd:    cmd,
		pty:    f,
		pid:    cmd.Process.Pid,
		stop:   make(chan error, 1),
		exited: make(chan struct{}),
		done:   make(chan struct{}),
	}
	s.touch()
	go s.reap()
	return s, nil
}

// release forgets an ended session, freeing its slot.
func (m *Manager) release(s *Session) {
	m.mu.Lock()
	delete(m.sessions, s)
	m.mu.Unlock()
}

// Sessions returns the number of sessions running or starting.
func (m *Manager) Sessions() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.sessions) + m.reserved
}

// Close refuses new sessions and closes every running one (see
// [Session.Close]); it blocks until all have ended, at most about
// [Config.KillGrace] plus the time to reap. It is safe to call more than
// once and concurrently; later calls wait for the same sessions.
func (m *Manager) Close() error {
	m.mu.Lock()
	m.closed = true
	live := make([]*Session, 0, len(m.sessions))
	for s := range m.sessions {
		live = append(live, s)
	}
	m.mu.Unlock()
	var wg sync.WaitGroup
	for _, s := range live {
		wg.Go(func() { _ = s.Close() })
	}
	wg.Wait()
	return nil
}

// now is the clock of the idle timeout.
func now() int64 { return time.Now().UnixNano() }
