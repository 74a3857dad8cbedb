// Package cli implements the client-manager command: its command line,
// its CLIENT_MANAGER_* environment, the data directory's lock, and the
// two ways the service runs, launched by the runtime (plugin mode) or on
// its own; plus the token and terminal subcommands.
package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/kelseyhightower/envconfig"

	"github.com/home-console/client-manager/internal/cmdflags"
	"github.com/home-console/client-manager/internal/cmservice"
	"github.com/home-console/client-manager/internal/dirlock"
	"github.com/home-console/client-manager/internal/envhelp"
	"github.com/home-console/client-manager/internal/logging"
	"github.com/home-console/client-manager/pkg/pluginproto"
)

// LockFile is the file in the data directory that the running client
// manager locks; it holds its pid.
const LockFile = "client-manager.lock"

// Main runs the client-manager command with args (without the program
// name) and returns its exit code (see cmdflags). It reads the
// CLIENT_MANAGER_* variables of the process environment. Launched by the
// runtime it serves the plugin contract until the runtime shuts it down
// and writes nothing to stdout but go-plugin's handshake; standalone it
// serves until ctx ends (the caller cancels it on SIGINT or SIGTERM), then
// drains. Either way it holds the data directory's lock from before the
// store is opened until it returns.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "token" {
		return tokenMain(ctx, args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "terminal" {
		return terminalMain(ctx, args[1:], os.Stdin, stdout, stderr)
	}
	cmd := cmdflags.Command{Flags: flag.NewFlagSet("client-manager", flag.ContinueOnError), Usage: usage, Version: true}
	if code, done := cmd.Parse(args, stdout, stderr); done {
		return code
	}
	cfg, err := loadConfig()
	if err != nil {
		fmt.Fprintln(stderr, "client-manager: configuration:", err)
		return cmdflags.ExitUsage
	}
	// Logs always go to stderr: in plugin mode stdout carries the handshake.
	// The writer never blocks; launched by the runtime it forwards over the
	// plugin connection, so a re-attached runtime still gets the logs.
	logs := pluginproto.NewLogWriter(stderr)
	log, err := logging.New(logs, cfg.LogLevel, cfg.logFormat())
	if err != nil {
		fmt.Fprintln(stderr, "client-manager: configuration:", err)
		return cmdflags.ExitUsage
	}
	lock, err := dirlock.AcquireDir(cfg.DataDir, LockFile)
	if err != nil {
		fmt.Fprintf(stderr, "client-manager: data directory %s is in use: %v\n", cfg.DataDir, err)
		return cmdflags.ExitError
	}
	defer lock.Release()
	svc := cmservice.New(cfg.service(), log)
	if pluginproto.LaunchedByRuntime() {
		pluginproto.Serve(&cmservice.Plugin{Service: svc}, pluginproto.WithLogWriter(logs))
		return cmdflags.ExitOK
	}
	if err := standalone(ctx, svc, log, cfg.DrainTimeout); err != nil {
		fmt.Fprintln(stderr, "client-manager:", err)
		return cmdflags.ExitError
	}
	return cmdflags.ExitOK
}

// loadConfig reads the environment over the defaults and validates it.
func loadConfig() (config, error) {
	cfg := defaults()
	if err := envconfig.Process(Prefix, &cfg); err != nil {
		return cfg, err
	}
	return cfg, cfg.validate()
}

// standalone serves until ctx ends, then drains within drain.
func standalone(ctx context.Context, svc *cmservice.Service, log *slog.Logger, drain time.Duration) error {
	signal.Ignore(syscall.SIGPIPE)
	if _, err := svc.Start(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	log.Info("signal received, draining")
	sctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	return svc.Stop(sctx, "signal")
}

const usageText = `Usage:
  client-manager [flags]            serve agents and operators until SIGTERM/SIGINT
  client-manager token SUBCOMMAND   manage operator tokens (client-manager token --help)
  client-manager terminal AGENT_ID  open a terminal on an agent (client-manager terminal --help)

Serves remote agents over WebSocket (/ws) and operators over REST (/api/...)
on CLIENT_MANAGER_HOST:CLIENT_MANAGER_PORT. Launched by the runtime it runs
as its plugin; started by hand it runs on its own, and SIGTERM or SIGINT
drain it and it exits 0. One client manager at a time uses a data directory.
Logs go to stderr. See README.md and docs/api.md.

Exit status: 0 stopped; 1 failed (for instance another client manager holds
CLIENT_MANAGER_DATA_DIR, or the port is taken); 2 bad flags, arguments or
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
