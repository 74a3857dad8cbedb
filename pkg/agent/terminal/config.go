package terminal

import (
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Defaults of [Config] and limits of [OpenRequest].
const (
	DefaultIdleTimeout = 15 * time.Minute
	DefaultMaxSessions = 4
	DefaultKillGrace   = time.Second
	DefaultTerm        = "xterm-256color"
	DefaultCols        = 80
	DefaultRows        = 24
	// MaxDimension is the largest number of columns or rows accepted.
	MaxDimension = 4096
	// maxTermLen bounds the TERM value of an open request.
	maxTermLen = 64
	// defaultPath is PATH when the agent's own environment has none.
	defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
)

// Config is the agent's terminal policy. The zero value refuses every
// session. Only the agent's own configuration sets it; nothing in an
// [OpenRequest] can change the shell, the user or the directory.
type Config struct {
	// Enabled allows terminal sessions at all (default false).
	Enabled bool
	// Shell is the argv of the program each session runs, e.g.
	// []string{"/bin/sh"} or []string{"/bin/bash", "-l"}. Required when
	// Enabled; Shell[0] must be an absolute path (no PATH lookup).
	Shell []string
	// User, when set, is the account the shell runs as (name or numeric
	// uid). An agent running as root switches to it (uid, gid and
	// supplementary groups from the user database); any other agent may
	// only name its own account. Empty: the agent's own account.
	User string
	// Dir is the shell's working directory; empty: the user's home
	// directory if it exists, else "/".
	Dir string
	// IdleTimeout ends a session that saw neither input nor output for
	// this long; zero means [DefaultIdleTimeout].
	IdleTimeout time.Duration
	// MaxSessions bounds the sessions open at once; zero means
	// [DefaultMaxSessions].
	MaxSessions int
	// KillGrace is how long a session's processes have between SIGHUP and
	// SIGKILL when it ends; zero means [DefaultKillGrace].
	KillGrace time.Duration
}

// OpenRequest is what the operator's side may choose about a session.
type OpenRequest struct {
	// Cols and Rows are the initial size; zero means [DefaultCols] and
	// [DefaultRows]; at most [MaxDimension] each.
	Cols, Rows int
	// Term is the TERM value the shell sees; empty means [DefaultTerm].
	// Letters, digits and ".+-_" only, at most 64 bytes.
	Term string
}

// withDefaults returns cfg with its zero fields filled in, or an error
// if it enables sessions without a usable shell.
func (cfg Config) withDefaults() (Config, error) {
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.MaxSessions <= 0 {
		cfg.MaxSessions = DefaultMaxSessions
	}
	if cfg.KillGrace <= 0 {
		cfg.KillGrace = DefaultKillGrace
	}
	if !cfg.Enabled {
		return cfg, nil
	}
	if len(cfg.Shell) == 0 || !filepath.IsAbs(cfg.Shell[0]) {
		return cfg, fmt.Errorf("terminal: the shell must be configured as an absolute path, got %q", cfg.Shell)
	}
	if cfg.Dir != "" && !filepath.IsAbs(cfg.Dir) {
		return cfg, fmt.Errorf("terminal: the working directory must be absolute, got %q", cfg.Dir)
	}
	return cfg, nil
}

// normalize fills in the defaults of r and checks its values.
func (r OpenRequest) normalize() (OpenRequest, error) {
	if r.Cols == 0 {
		r.Cols = DefaultCols
	}
	if r.Rows == 0 {
		r.Rows = DefaultRows
	}
	if r.Term == "" {
		r.Term = DefaultTerm
	}
	if err := checkSize(r.Cols, r.Rows); err != nil {
		return r, err
	}
	if len(r.Term) > maxTermLen {
		return r, fmt.Errorf("%w: TERM longer than %d bytes", ErrBadRequest, maxTermLen)
	}
	for _, c := range r.Term {
		if !termChar(c) {
			return r, fmt.Errorf("%w: TERM %q has a character other than letters, digits and .+-_", ErrBadRequest, r.Term)
		}
	}
	return r, nil
}

func termChar(c rune) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '.' || c == '+' || c == '-' || c == '_'
}

// checkSize refuses a size outside 1..MaxDimension.
func checkSize(cols, rows int) error {
	if cols < 1 || rows < 1 || cols > MaxDimension || rows > MaxDimension {
		return fmt.Errorf("%w: size %dx%d outside 1..%d", ErrBadRequest, cols, rows, MaxDimension)
	}
	return nil
}

// environment is the shell's environment except TERM: HOME, USER, SHELL,
// PATH (the agent's, or a default) and LANG if the agent has one.
func environment(home, user, shell string) []string {
	path := os.Getenv("PATH")
	if path == "" {
		path = defaultPath
	}
	env := []string{"HOME=" + home, "USER=" + user, "SHELL=" + shell, "PATH=" + path}
	if lang, ok := os.LookupEnv("LANG"); ok {
		env = append(env, "LANG="+lang)
	}
	return env
}

// workDir is dir, or home if it is a directory, or "/".
func workDir(dir, home string) string {
	if dir != "" {
		return dir
	}
	if st, err := os.Stat(home); err == nil && st.IsDir() {
		return home
	}
	return "/"
}
