package pluginproto

import (
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
)

// TermStopTimeout bounds how long [Serve] lets a plugin drain after SIGTERM.
const TermStopTimeout = 10 * time.Second

// ServeOption configures [Serve].
type ServeOption func(*serveConfig)

type serveConfig struct {
	logs *LogWriter
}

// WithLogWriter tells [Serve] which [LogWriter] the plugin logs through:
// Serve attaches it to the runtime's log stream once go-plugin has set the
// stream up, flushes it before answering Stop, and detaches it again when
// it returns. go-plugin's own messages go through it too.
func WithLogWriter(w *LogWriter) ServeOption {
	return func(c *serveConfig) { c.logs = w }
}

// Serve serves p to the runtime over gRPC and blocks until the runtime shuts
// the plugin down (or SIGTERM arrives), then calls p.Stop once more so the
// plugin is always drained, and returns. Call it from main when
// [LaunchedByRuntime] is true; write nothing to stdout before it.
//
// Serve ignores SIGPIPE, so the process survives the runtime dying and its
// stderr pipe breaking. A plugin that logs through a [LogWriter] (see
// [WithLogWriter]) never blocks on logging and its logs reach a runtime
// that re-attached to it; other output to os.Stderr after Serve started
// goes to go-plugin's stream and blocks once 64 KiB are pending while no
// runtime is attached. go-plugin already ignores SIGINT in plugin processes:
// a Ctrl-C in the runtime's terminal reaches the whole process group, and the
// runtime, not the terminal, decides when its plugins stop.
func Serve(p Plugin, opts ...ServeOption) {
	var cfg serveConfig
	for _, o := range opts {
		o(&cfg)
	}
	signal.Ignore(syscall.SIGPIPE)
	var hcOut io.Writer = os.Stderr
	if cfg.logs != nil {
		hcOut = cfg.logs
	}

	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	defer signal.Stop(term)

	done := make(chan struct{})
	go func() {
		defer close(done)
		plugin.Serve(&plugin.ServeConfig{
			HandshakeConfig: Handshake,
			Plugins:         plugin.PluginSet{PluginKey: &GRPCPlugin{Impl: p, logs: cfg.logs}},
			GRPCServer:      plugin.DefaultGRPCServer,
			Logger: hclog.New(&hclog.LoggerOptions{
				Name:   "go-plugin",
				Level:  hclog.Warn,
				Output: hcOut,
			}),
		})
	}()

	reason := "runtime shut the plugin down"
	select {
	case <-done:
		// The stream is gone; what the plugin logs now goes to the raw
		// stderr, which a runtime that launched the process reads to the end.
		if cfg.logs != nil {
			cfg.logs.detach()
		}
	case <-term:
		reason = "SIGTERM"
	}
	ctx, cancel := context.WithTimeout(context.Background(), TermStopTimeout)
	defer cancel()
	_ = p.Stop(ctx, reason)
}
