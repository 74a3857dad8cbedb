// Package cli implements the agent command: flag and environment parsing,
// enrolling or loading the credential, and running the agent or the
// simulator until the context is cancelled.
package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/home-console/client-manager/internal/dirlock"
	"github.com/home-console/client-manager/internal/version"
	"github.com/home-console/client-manager/pkg/agent"
	"github.com/home-console/client-manager/pkg/agent/files"
	"github.com/home-console/client-manager/pkg/agent/terminal"
	"github.com/home-console/client-manager/pkg/agentproto"
)

// Exit codes of Main.
const (
	ExitOK         = 0 // stopped by a signal, or -h / --version
	ExitError      = 1 // any other failure
	ExitUsage      = 2 // bad flags or environment
	ExitCredential = 3 // enrollment token or credential refused, or revoked
)

// DefaultAllow is the default allow-list: commands that only report on the
// system, whatever their arguments. date and hostname are left out because
// with arguments they set the clock or the host name when run as root; ls
// and cat because they read arbitrary files.
const DefaultAllow = "uname,uptime,whoami,id,df,free"

// Main runs the agent command with args (without the program name) and
// returns the process exit code. It blocks until ctx is cancelled (the
// caller cancels it on SIGINT/SIGTERM) or the agent cannot go on. -h,
// --help and --version print to stdout and return ExitOK; an unknown flag
// or a stray argument prints the usage to stderr and returns ExitUsage.
// Both do so before touching any file.
func Main(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "simulate" {
		return simulate(ctx, args[1:], getenv, stdout, stderr)
	}
	return runAgent(ctx, args, getenv, stdout, stderr)
}

type agentOptions struct {
	server, token, credFile, journalFile, name, labels, allow, level, caFile string

	allowTerminal               bool
	terminalShell, terminalUser string
	terminalIdle                time.Duration
	terminalMax                 int
	filesRoots                  []string
	filesMaxSize                int64
	filesMaxTransfers           int
}

const agentUsage = `Usage:
  agent [flags]            enroll if needed, then serve the client manager
  agent simulate [flags]   run simulated agents for load tests (agent simulate -h)

Exit status: 0 stopped by a signal (or -h, --version), 1 error (for example another
agent already runs with this credential), 2 usage, 3 token or credential refused or
revoked.
`

// parseAgentFlags parses the agent's flags over their environment
// variables; see commandLine.parse for code and done. An empty journalFile
// means the default, which depends on the agent id (journalFileFor).
func parseAgentFlags(args []string, getenv func(string) string, stdout, stderr io.Writer) (o agentOptions, code int, done bool) {
	c := newCommandLine("agent", agentUsage)
	var envErrs []error
	e := envFlags{fs: c.fs, getenv: getenv, errs: &envErrs}
	e.string(&o.server, "server", "AGENT_SERVER", "http://localhost:10000", "client manager base URL")
	e.secret(&o.token, "enroll-token", "AGENT_ENROLL_TOKEN", "enrollment token, or @file to read it from a file; used only when no credential is stored")
	e.string(&o.credFile, "credential-file", "AGENT_CREDENTIAL_FILE", defaultCredentialFile(getenv), "where the agent credential is stored")
	e.string(&o.journalFile, "journal-file", "AGENT_JOURNAL_FILE", "", "where the agent journals its commands, so that a restarted agent neither runs one again nor loses its result; locked while the agent runs (default: journal-<agent id>.jsonl next to the credential file)")
	e.string(&o.name, "name", "AGENT_NAME", "", "agent name given at enrollment (default: host name)")
	e.string(&o.labels, "labels", "AGENT_LABELS", "", "labels as key=value,key=value")
	e.string(&o.allow, "allow", "AGENT_ALLOW", DefaultAllow, "comma-separated executables the server may run (names, or exact absolute paths)")
	e.string(&o.level, "log-level", "AGENT_LOG_LEVEL", "info", "debug, info, warn or error")
	e.string(&o.caFile, "ca-file", "AGENT_CA_FILE", "", "PEM file of CA certificates to trust for https/wss")
	sessionFlags(e, &o)
	if code, done = c.parse(args, stdout, stderr); done {
		return o, code, done
	}
	if err := errors.Join(append(envErrs, o.checkSessions())...); err != nil {
		fmt.Fprintf(stderr, "agent: %v\n", err)
		c.usage(stderr)
		return o, ExitUsage, true
	}
	return o, ExitOK, false
}

// sessionFlags registers the terminal and file transfer flags.
func sessionFlags(e envFlags, o *agentOptions) {
	shell := e.getenv("SHELL")
	if !filepath.IsAbs(shell) {
		shell = "/bin/sh"
	}
	e.bool(&o.allowTerminal, "allow-terminal", "AGENT_ALLOW_TERMINAL", false, "allow the server to open terminal sessions (a shell on a PTY) on this host")
	e.string(&o.terminalShell, "terminal-shell", "AGENT_TERMINAL_SHELL", shell, "absolute path of the shell terminal sessions run (default: $SHELL when absolute, else /bin/sh)")
	e.string(&o.terminalUser, "terminal-user", "AGENT_TERMINAL_USER", "", "account terminal sessions run as (name or uid); only an agent running as root may name another (default: the agent's own)")
	e.duration(&o.terminalIdle, "terminal-idle-timeout", "AGENT_TERMINAL_IDLE_TIMEOUT", terminal.DefaultIdleTimeout, "end a terminal session without input or output for this long")
	e.int(&o.terminalMax, "terminal-max-sessions", "AGENT_TERMINAL_MAX_SESSIONS", terminal.DefaultMaxSessions, "terminal sessions open at once")
	e.list(&o.filesRoots, "files-root", "AGENT_FILES_ROOT", "directory under which the server may read, write and list files (none: file transfers refused)")
	e.int64(&o.filesMaxSize, "files-max-size", "AGENT_FILES_MAX_SIZE", files.DefaultMaxTransferSize, "largest file read or written, in bytes")
	e.int(&o.filesMaxTransfers, "files-max-transfers", "AGENT_FILES_MAX_TRANSFERS", files.DefaultMaxTransfers, "file transfers open at once")
}

// checkSessions refuses limits that are not positive.
func (o agentOptions) checkSessions() error {
	var errs []error
	if o.terminalIdle <= 0 {
		errs = append(errs, fmt.Errorf("--terminal-idle-timeout must be positive, got %s", o.terminalIdle))
	}
	for _, l := range []struct {
		name string
		v    int64
	}{{"terminal-max-sessions", int64(o.terminalMax)}, {"files-max-size", o.filesMaxSize}, {"files-max-transfers", int64(o.filesMaxTransfers)}} {
		if l.v <= 0 {
			errs = append(errs, fmt.Errorf("--%s must be positive, got %d", l.name, l.v))
		}
	}
	return errors.Join(errs...)
}

// agentConfig builds the SDK's configuration from the options.
func agentConfig(o agentOptions, cred agent.StoredCredential, facts agentproto.Hello, log *slog.Logger, client *http.Client) agent.Config {
	return agent.Config{
		ServerURL: o.server, Credential: cred.Credential, Facts: facts,
		Allowed: splitList(o.allow), Logger: log, HTTPClient: client, JournalPath: o.journalFile,
		TerminalStatePath: stateFileFor(o.credFile, cred.Credential, "terminals-", ".json"),
		Terminal: terminal.Config{Enabled: o.allowTerminal, Shell: []string{o.terminalShell}, User: o.terminalUser,
			IdleTimeout: o.terminalIdle, MaxSessions: o.terminalMax},
		Files: files.Config{Roots: o.filesRoots, MaxTransferSize: o.filesMaxSize, MaxTransfers: o.filesMaxTransfers},
	}
}

func runAgent(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	o, code, done := parseAgentFlags(args, getenv, stdout, stderr)
	if done {
		return code
	}
	level, lerr := parseLevel(o.level)
	labels, berr := parseLabels(o.labels)
	tlsConf, terr := loadTLS(o.caFile)
	if err := errors.Join(lerr, berr, terr); err != nil {
		fmt.Fprintln(stderr, "agent:", err)
		return ExitUsage
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	client := &http.Client{Transport: transport(tlsConf)}
	hostname, _ := os.Hostname()
	facts := agentproto.Hello{Hostname: hostname, OS: runtime.GOOS, Arch: runtime.GOARCH, Version: version.Get().Version, Labels: labels}
	cred, err := loadOrEnroll(ctx, o, facts, client, log)
	if err != nil {
		fmt.Fprintln(stderr, "agent:", err)
		switch {
		case ctx.Err() != nil:
			return ExitOK
		case errors.Is(err, agent.ErrUnauthorized):
			return ExitCredential
		}
		return ExitError
	}
	if o.journalFile == "" {
		o.journalFile = journalFileFor(o.credFile, cred.Credential)
	}
	a, err := agent.New(agentConfig(o, cred, facts, log, client))
	if err != nil {
		fmt.Fprintln(stderr, "agent:", err)
		return ExitUsage
	}
	log.Info("agent starting", "agent_id", cred.AgentID, "server", o.server, "allowed", splitList(o.allow), "journal", o.journalFile,
		"terminal", o.allowTerminal, "files_roots", o.filesRoots)
	return fail(ctx, stderr, a.Run(ctx), o)
}

// fail reports err and picks the exit code; a nil error, or one caused by
// the context's cancellation, is a clean stop.
func fail(ctx context.Context, stderr io.Writer, err error, o agentOptions) int {
	var held *dirlock.HeldError
	switch {
	case err == nil, ctx.Err() != nil:
		return ExitOK
	case errors.Is(err, agent.ErrJournalInUse) && errors.As(err, &held):
		fmt.Fprintf(stderr, "agent: another agent process (pid %d) is already running with the credential %s: "+
			"its journal %s is locked.\nagent: stop that process first, or give this agent its own --credential-file\n",
			held.PID, o.credFile, o.journalFile)
		return ExitError
	case errors.Is(err, agent.ErrRevoked), errors.Is(err, agent.ErrUnauthorized):
		fmt.Fprintf(stderr, "agent: %v\nagent: the server no longer accepts this agent's credential: "+
			"remove %s and enroll again with --enroll-token\n", err, o.credFile)
		return ExitCredential
	}
	fmt.Fprintln(stderr, "agent:", err)
	return ExitError
}

// journalFileFor is the default journal of the agent whose credential is
// stored in credFile: journal-<agent id>.jsonl in the same directory, so
// that agents with different credentials in one directory never share a
// journal. Characters of the id other than letters, digits, '-' and '_'
// become '_' (a clash can only make two agents refuse to share, never
// share).
func journalFileFor(credFile, credential string) string {
	return stateFileFor(credFile, credential, "journal-", ".jsonl")
}

// stateFileFor is prefix + the agent id + ext in credFile's directory, the
// id made safe as for journalFileFor.
func stateFileFor(credFile, credential, prefix, ext string) string {
	id, _, _ := agentproto.ParseCredential(credential)
	safe := strings.Map(func(r rune) rune {
		if 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '_'
	}, id)
	return filepath.Join(filepath.Dir(credFile), prefix+safe+ext)
}

// loadTLS returns a TLS config trusting the CAs in caFile, or nil.
func loadTLS(caFile string) (*tls.Config, error) {
	if caFile == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("ca file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("ca file %s: no PEM certificates", caFile)
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

func transport(tlsConf *tls.Config) *http.Transport {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tlsConf
	return tr
}
