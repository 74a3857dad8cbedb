package pluginproto

import (
	"context"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
)

// TermStopTimeout bounds how long [Serve] lets a plugin drain after SIGTERM.
const TermStopTimeout = 10 * time.Second

// Serve serves p to the runtime over gRPC and blocks until the runtime shuts
// the plugin down (or SIGTERM arrives), then calls p.Stop once more so the
// plugin is always drained, and returns. Call it from main when
// [LaunchedByRuntime] is true; write nothing to stdout before it.
//
// Serve ignores SIGPIPE, so the process survives the runtime dying and its
// stderr pipe breaking. go-plugin already ignores SIGINT in plugin processes:
// a Ctrl-C in the runtime's terminal reaches the whole process group, and the
// runtime, not the terminal, decides when its plugins stop.
func Serve(p Plugin) {
	signal.Ignore(syscall.SIGPIPE)

	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	defer signal.Stop(term)

	done := make(chan struct{})
	go func() {
		defer close(done)
		plugin.Serve(&plugin.ServeConfig{
			HandshakeConfig: Handshake,
			Plugins:         plugin.PluginSet{PluginKey: &GRPCPlugin{Impl: p}},
			GRPCServer:      plugin.DefaultGRPCServer,
			Logger: hclog.New(&hclog.LoggerOptions{
				Name:   "go-plugin",
				Level:  hclog.Warn,
				Output: os.Stderr,
			}),
		})
	}()

	reason := "runtime shut the plugin down"
	select {
	case <-done:
	case <-term:
		reason = "SIGTERM"
	}
	ctx, cancel := context.WithTimeout(context.Background(), TermStopTimeout)
	defer cancel()
	_ = p.Stop(ctx, reason)
}
