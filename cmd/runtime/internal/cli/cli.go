// Package cli implements the runtime command: its command line, its
// RUNTIME_* environment and its logger; [runtimehost.Run] does the rest.
package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/kelseyhightower/envconfig"

	"github.com/home-console/client-manager/internal/cmdflags"
	"github.com/home-console/client-manager/internal/connlimit"
	"github.com/home-console/client-manager/internal/envhelp"
	"github.com/home-console/client-manager/internal/logging"
	"github.com/home-console/client-manager/internal/runtimehost"
)

// Prefix starts the name of every environment variable of the runtime.
const Prefix = "RUNTIME"

// env is the runtime's environment. Its defaults are those of
// runtimehost.DefaultConfig and the logging package (see defaults); the
// README's table lists the same.
type env struct {
	Host            string        `envconfig:"HOST" desc:"address of the admin API and the plugins' mounts; a non-loopback one needs RUNTIME_ADMIN_TOKEN"`
	Port            int           `envconfig:"PORT" desc:"its port; 0 picks a free one"`
	PluginsDir      string        `envconfig:"PLUGINS_DIR" desc:"directory of <plugin>/plugin.json manifests"`
	StateDir        string        `envconfig:"STATE_DIR" desc:"lock, admin.addr and re-attach records; one runtime per directory"`
	ShutdownTimeout time.Duration `envconfig:"SHUTDOWN_TIMEOUT" desc:"bound for stopping every plugin on SIGTERM/SIGINT"`
	LogLevel        string        `envconfig:"LOG_LEVEL" desc:"debug, info, warn or error"`
	LogFormat       string        `envconfig:"LOG_FORMAT" desc:"text or json (on stderr)"`
	AdminToken      string        `envconfig:"ADMIN_TOKEN" desc:"bearer token of the admin API"`
	AllowedHosts    []string      `envconfig:"ALLOWED_HOSTS" desc:"host names the port may be addressed by besides loopback ones and RUNTIME_HOST (others: 421)"`
	AllowedOrigins  []string      `envconfig:"ALLOWED_ORIGINS" desc:"browser origins allowed to send admin actions besides the port's own"`

	ReadHeaderTimeout  time.Duration `envconfig:"READ_HEADER_TIMEOUT" desc:"time to send a request's header; a slower connection is closed"`
	ReadTimeout        time.Duration `envconfig:"READ_TIMEOUT" desc:"time to send a whole request, header and body"`
	WriteTimeout       time.Duration `envconfig:"WRITE_TIMEOUT" desc:"time to take a response; a proxied one: each write of it"`
	IdleTimeout        time.Duration `envconfig:"IDLE_TIMEOUT" desc:"a kept-alive connection sending no new request is closed after this"`
	MaxOpenConnections int           `envconfig:"MAX_OPEN_CONNECTIONS" desc:"open connections of every kind (at most RLIMIT_NOFILE-128); beyond, the longest-waiting idle or half-sent one is closed"`
}

// defaults returns the environment's defaults, taken from the packages
// that apply them.
func defaults() env {
	d := runtimehost.DefaultConfig()
	return env{
		Host: d.Host, Port: d.Port, PluginsDir: d.PluginsDir, StateDir: d.StateDir,
		ShutdownTimeout: d.ShutdownTimeout, AdminToken: d.AdminToken,
		LogLevel: logging.DefaultLevel, LogFormat: logging.DefaultFormat,

		ReadHeaderTimeout: d.Timeouts.ReadHeader, ReadTimeout: d.Timeouts.Read,
		WriteTimeout: d.Timeouts.Write, IdleTimeout: d.Timeouts.Idle, MaxOpenConnections: d.MaxOpenConnections,
	}
}

func (e env) config() runtimehost.Config {
	return runtimehost.Config{
		Host: e.Host, Port: e.Port, PluginsDir: e.PluginsDir, StateDir: e.StateDir,
		ShutdownTimeout: e.ShutdownTimeout, AdminToken: e.AdminToken,
		AllowedHosts: e.AllowedHosts, AllowedOrigins: e.AllowedOrigins,

		Timeouts: connlimit.Timeouts{
			ReadHeader: e.ReadHeaderTimeout, Read: e.ReadTimeout, Write: e.WriteTimeout, Idle: e.IdleTimeout,
		},
		MaxOpenConnections: e.MaxOpenConnections,
	}
}

// Main runs the runtime command with args (without the program name) and
// returns its exit code (see cmdflags). It reads the RUNTIME_* variables
// of the process environment and blocks until ctx ends (the caller
// cancels it on SIGINT or SIGTERM: the plugins are stopped) or SIGUSR2
// arrives (they are left running); see [runtimehost.Run].
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cmd := cmdflags.Command{Flags: flag.NewFlagSet("runtime", flag.ContinueOnError), Usage: usage, Version: true}
	if code, done := cmd.Parse(args, stdout, stderr); done {
		return code
	}
	e := defaults()
	if err := envconfig.Process(Prefix, &e); err != nil {
		fmt.Fprintln(stderr, "runtime: configuration:", err)
		return cmdflags.ExitUsage
	}
	log, err := logging.New(stderr, e.LogLevel, e.LogFormat)
	if err != nil {
		fmt.Fprintln(stderr, "runtime: configuration:", err)
		return cmdflags.ExitUsage
	}
	cfg := e.config()
	if err := cfg.Validate(); err != nil {
		fmt.Fprintln(stderr, "runtime:", err)
		return cmdflags.ExitUsage
	}
	if err := runtimehost.Run(ctx, cfg, log); err != nil {
		fmt.Fprintln(stderr, "runtime:", err)
		return cmdflags.ExitError
	}
	return cmdflags.ExitOK
}

const usageText = `Usage: runtime [flags]

The plugin host. It discovers the plugin manifests in RUNTIME_PLUGINS_DIR,
runs each plugin as a separate process under supervision, and serves the
admin API (/api/admin/v1/...) and the plugins' mounts on
RUNTIME_HOST:RUNTIME_PORT. Logs go to stderr. See docs/runtime.md.

Signals: SIGTERM or SIGINT stop the plugins in reverse dependency order,
then the runtime exits 0. SIGUSR2 detaches: the runtime exits 0 and leaves
its plugins running for the next runtime with the same RUNTIME_STATE_DIR.

Exit status: 0 stopped or detached; 1 failed (for instance another runtime
holds RUNTIME_STATE_DIR, or the port is taken); 2 bad flags, arguments or
configuration.

Flags:
  -h, --help    print this help and exit
  --version     print the version, commit and Go version and exit

Environment (VARIABLE=default, then what it sets):
`

func usage(w io.Writer) {
	fmt.Fprint(w, usageText)
	d := defaults()
	vars, _ := envhelp.Vars(Prefix, &d) // cannot fail on a struct
	_ = envhelp.Write(w, vars)
}
