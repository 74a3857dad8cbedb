// Command flaky is a test-only plugin whose misbehaviour is chosen by the
// FLAKY_MODE environment variable:
//
//	""                   behaves: serves GET /health on 127.0.0.1:0
//	exit-now             exits with code 3 before serving the plugin contract
//	hang-before-serve    never completes go-plugin's handshake (sleeps)
//	crash-after-start    exits with code 2 FLAKY_CRASH_AFTER (default 300ms) after Start
//	never-ready          Health never reports ready
//	unhealthy            Health answers ready once, then returns errors
//	hang-on-stop         Stop blocks until its deadline and SIGTERM is ignored
//	spawn-child          also starts "sleep 300" in its process group and
//	                     reports its pid in Health details["child_pid"]
//
// FLAKY_NAME sets the name Describe reports (default "flaky").
//
// It logs through a pluginproto.LogWriter and serves, besides GET /health:
//
//	GET /echo        what the request looked like: path, the runtime proxy's
//	                 forwarded-for header and whether its token matched the
//	                 one Start was given
//	GET /log?n=N     logs N lines (and one straight to the raw stderr) and
//	                 answers at once
package main

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/home-console/client-manager/pkg/pluginproto"
)

func main() {
	if !pluginproto.LaunchedByRuntime() {
		fmt.Fprintln(os.Stderr, "flaky: test plugin, must be launched by the runtime")
		os.Exit(1)
	}
	mode := os.Getenv("FLAKY_MODE")
	logs := pluginproto.NewLogWriter(os.Stderr)
	fmt.Fprintln(logs, "flaky: starting in mode", strconv.Quote(mode))
	if mode == "exit-now" {
		os.Exit(3)
	}
	for mode == "hang-before-serve" {
		time.Sleep(time.Hour)
	}
	if mode == "hang-on-stop" {
		signal.Ignore(syscall.SIGTERM)
	}
	p := &flaky{mode: mode, instance: instanceID(), logs: logs, raw: os.Stderr}
	pluginproto.Serve(p, pluginproto.WithLogWriter(logs))
	if mode == "hang-on-stop" {
		select {}
	}
}

type flaky struct {
	mode     string
	instance string
	logs     *pluginproto.LogWriter
	raw      *os.File // the stderr the process started with

	mu      sync.Mutex
	srv     *http.Server
	addr    string
	started bool
	healthy int // ready answers given
	child   *exec.Cmd
	token   string // the proxy token Start was given
}

func (f *flaky) Describe(context.Context) (pluginproto.Description, error) {
	name := os.Getenv("FLAKY_NAME")
	if name == "" {
		name = "flaky"
	}
	return pluginproto.Description{Name: name, Version: "0.0.1", InstanceID: f.instance, PID: os.Getpid()}, nil
}

func (f *flaky) Start(ctx context.Context, cfg map[string]string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.started {
		return f.addr, nil
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	f.token = cfg[pluginproto.ConfigProxyToken]
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte(`{"status":"ok"}`))
	})
	mux.HandleFunc("GET /echo", f.echo)
	mux.HandleFunc("GET /log", f.log)
	f.srv = &http.Server{Handler: mux, ReadHeaderTimeout: time.Second}
	go func() { _ = f.srv.Serve(ln) }()
	f.addr, f.started = ln.Addr().String(), true

	switch f.mode {
	case "crash-after-start":
		after, err := time.ParseDuration(os.Getenv("FLAKY_CRASH_AFTER"))
		if err != nil {
			after = 300 * time.Millisecond
		}
		time.AfterFunc(after, func() { os.Exit(2) })
	case "spawn-child":
		f.child = exec.Command("sleep", "300")
		if err := f.child.Start(); err != nil {
			return "", err
		}
	}
	fmt.Fprintln(f.logs, "flaky: serving on", f.addr)
	return f.addr, nil
}

func (f *flaky) echo(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	token := f.token
	f.mu.Unlock()
	got := r.Header.Get(pluginproto.HeaderProxyToken)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"path":          r.URL.Path,
		"forwarded_for": r.Header.Get(pluginproto.HeaderForwardedFor),
		"token_ok":      token != "" && subtle.ConstantTimeCompare([]byte(got), []byte(token)) == 1,
	})
}

func (f *flaky) log(w http.ResponseWriter, r *http.Request) {
	n, _ := strconv.Atoi(r.URL.Query().Get("n"))
	for i := range n {
		fmt.Fprintf(f.logs, "flaky: log line %d of %d\n", i+1, n)
	}
	_, _ = fmt.Fprintln(f.raw, "flaky: a line to the raw stderr")
	_, _ = w.Write([]byte(`{"status":"ok"}`))
}

func (f *flaky) Stop(ctx context.Context, reason string) error {
	fmt.Fprintln(f.logs, "flaky: stopping:", reason)
	if f.mode == "hang-on-stop" {
		<-ctx.Done()
		return ctx.Err()
	}
	f.mu.Lock()
	srv := f.srv
	f.mu.Unlock()
	if srv == nil {
		return nil
	}
	return srv.Shutdown(ctx)
}

func (f *flaky) Health(context.Context) (pluginproto.Health, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	details := map[string]string{"mode": f.mode}
	if f.child != nil {
		details["child_pid"] = strconv.Itoa(f.child.Process.Pid)
	}
	switch {
	case f.mode == "unhealthy" && f.healthy > 0:
		return pluginproto.Health{}, errors.New("flaky: unhealthy on purpose")
	case f.mode == "never-ready" || !f.started:
		return pluginproto.Health{Ready: false, Status: "starting", Details: details}, nil
	}
	f.healthy++
	return pluginproto.Health{Ready: true, Status: "ready", Details: details}, nil
}

func instanceID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
