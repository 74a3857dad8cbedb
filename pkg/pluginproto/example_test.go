package pluginproto_test

import (
	"context"
	"crypto/rand"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"

	"github.com/home-console/client-manager/pkg/pluginproto"
)

// hello is a complete plugin: an HTTP server on a port of its own that
// answers "hello", with the lifecycle the runtime expects.
type hello struct {
	log        *slog.Logger
	instanceID string

	mu  sync.Mutex
	srv *http.Server
	ln  net.Listener
}

func (p *hello) Describe(context.Context) (pluginproto.Description, error) {
	return pluginproto.Description{
		Name: "hello", Version: "1.0.0", Description: "says hello",
		InstanceID: p.instanceID, PID: os.Getpid(),
	}, nil
}

func (p *hello) Start(ctx context.Context, _ map[string]string) (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil { // a re-attached runtime calls Start again
		return p.ln.Addr().String(), nil
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	p.ln = ln
	p.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("hello\n"))
	})}
	go func() { _ = p.srv.Serve(ln) }()
	p.log.Info("serving", "addr", ln.Addr().String())
	return ln.Addr().String(), nil
}

func (p *hello) Stop(ctx context.Context, reason string) error {
	p.mu.Lock()
	srv := p.srv
	p.mu.Unlock()
	if srv == nil {
		return nil
	}
	p.log.Info("draining", "reason", reason)
	return srv.Shutdown(ctx)
}

func (p *hello) Health(context.Context) (pluginproto.Health, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln == nil {
		return pluginproto.Health{Ready: false, Status: "starting"}, nil
	}
	return pluginproto.Health{Ready: true, Status: "ready"}, nil
}

// A plugin's main: log through a LogWriter, and serve the plugin when the
// runtime launched the process.
func ExampleServe() {
	logs := pluginproto.NewLogWriter(os.Stderr)
	p := &hello{log: slog.New(slog.NewJSONHandler(logs, nil)), instanceID: rand.Text()}
	if pluginproto.LaunchedByRuntime() {
		pluginproto.Serve(p, pluginproto.WithLogWriter(logs))
		return
	}
	// Started by hand: run standalone, or tell the user how to launch it.
}
