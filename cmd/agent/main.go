// Command agent is the reference remote agent of the client manager.
//
//	agent [flags]            enroll once if needed, then stay connected
//	agent simulate [flags]   run many simulated agents (load tests)
//
// Run "agent -h" or "agent simulate -h" for the flags (every flag has an
// AGENT_* environment variable fallback), "agent --version" for the
// version. See docs/protocol.md.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/home-console/client-manager/cmd/agent/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
