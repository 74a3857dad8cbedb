// Command client-manager serves remote agents over WebSocket and operators
// over REST. Launched by the runtime it also serves the plugin contract over
// gRPC; started by hand it runs standalone until SIGTERM or SIGINT.
// "client-manager token ..." manages operator tokens; "client-manager
// terminal AGENT_ID" opens a terminal on an agent. Run
// "client-manager --help" for the environment variables.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/home-console/client-manager/cmd/client-manager/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
