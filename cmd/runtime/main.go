// Command runtime is the plugin host. It discovers plugin manifests, runs
// each plugin as a separate OS process supervised through go-plugin, and
// serves the admin API (default 127.0.0.1:8000) and, on the same port, the
// HTTP API of every plugin with a "mount" in its manifest.
//
// SIGTERM or SIGINT stops the plugins in reverse dependency order, then the
// runtime exits 0. SIGUSR2 detaches: the runtime exits 0 and leaves its
// running plugins running; the next runtime started with the same
// RUNTIME_STATE_DIR re-attaches to them (as it does after a SIGKILL).
// Run "runtime --help" for the environment variables.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/home-console/client-manager/cmd/runtime/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
