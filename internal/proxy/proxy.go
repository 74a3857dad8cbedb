// Package proxy serves plugins' HTTP APIs on the runtime's own port, each
// under its mount path (one-port mode), by reverse-proxying to the address
// the plugin currently serves on.
//
// A request for <mount> or <mount>/... goes to the plugin with the mount
// prefix stripped; every other request goes to the next handler (the
// admin API). The upstream is looked up for every request, so a plugin
// restarted on a new port is followed at once. WebSocket upgrades are
// carried through and responses are streamed (server-sent events work):
// the server's read deadline ends with the request body and its write
// timeout applies to each write, not to the whole response, so event
// streams and long polls outlast the runtime's timeouts.
//
// The plugin cannot trust anything the caller says about itself: the
// proxy removes incoming Forwarded, X-Forwarded-*, X-Real-IP,
// [pluginproto.HeaderForwardedFor] and [pluginproto.HeaderProxyToken]
// headers, then sets HeaderForwardedFor to the IP address of its TCP peer
// and HeaderProxyToken to the plugin's secret. The Host header is passed
// on unchanged, so that a plugin's WebSocket origin check sees the host a
// browser connected to.
//
// While a plugin is not running the proxy answers 503
// {"error":{"code":"plugin_unavailable",...}} with Retry-After; when the
// plugin fails before answering, 502 {"error":{"code":"bad_gateway",...}}.
package proxy

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/home-console/client-manager/internal/httpjson"
	"github.com/home-console/client-manager/internal/longlived"
	"github.com/home-console/client-manager/pkg/pluginproto"
)

// Mount routes a path and everything below it to a plugin.
type Mount struct {
	// Path is the mount path, such as "/client-manager", without a
	// trailing slash.
	Path string
	// Plugin is the plugin's name.
	Plugin string
}

// Upstream is where a plugin serves HTTP now.
type Upstream struct {
	// Addr is the host:port to dial.
	Addr string
	// Token is the secret every proxied request carries in
	// pluginproto.HeaderProxyToken.
	Token string
}

// Resolver returns the upstream of the named plugin, or an error saying
// why the plugin cannot serve now.
type Resolver func(plugin string) (Upstream, error)

// Config configures a [Proxy]. Zero durations take defaults.
type Config struct {
	Mounts  []Mount
	Resolve Resolver
	// Next serves every request outside the mounts.
	Next http.Handler
	Log  *slog.Logger
	// DialTimeout bounds connecting to a plugin (default 5s).
	DialTimeout time.Duration
	// ResponseHeaderTimeout bounds waiting for a plugin's response headers
	// (default 6m, above the client manager's longest synchronous wait).
	ResponseHeaderTimeout time.Duration
}

// Limits of the proxy.
const (
	// MaxResponseHeaderBytes bounds a plugin's response headers.
	MaxResponseHeaderBytes = 64 << 10
	// retryAfter is the Retry-After of a 503, in seconds.
	retryAfter = 2
)

// Proxy is the http.Handler of the runtime's port in one-port mode.
type Proxy struct {
	mounts  []Mount // longest path first
	resolve Resolver
	next    http.Handler
	log     *slog.Logger
	rp      *httputil.ReverseProxy
}

// New returns a Proxy over cfg's mounts.
func New(cfg Config) *Proxy {
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 5 * time.Second
	}
	if cfg.ResponseHeaderTimeout <= 0 {
		cfg.ResponseHeaderTimeout = 6 * time.Minute
	}
	p := &Proxy{mounts: slices.Clone(cfg.Mounts), resolve: cfg.Resolve, next: cfg.Next, log: cfg.Log}
	slices.SortFunc(p.mounts, func(a, b Mount) int { return len(b.Path) - len(a.Path) })
	p.rp = &httputil.ReverseProxy{
		Rewrite: rewrite,
		Transport: &http.Transport{
			Proxy:                  nil, // never an HTTP(S)_PROXY from the environment
			DialContext:            (&net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConnsPerHost:    64,
			IdleConnTimeout:        90 * time.Second,
			ResponseHeaderTimeout:  cfg.ResponseHeaderTimeout,
			ExpectContinueTimeout:  time.Second,
			MaxResponseHeaderBytes: MaxResponseHeaderBytes,
			DisableCompression:     true,
		},
		FlushInterval: -1,
		ErrorHandler:  p.upstreamFailed,
		ErrorLog:      slog.NewLogLogger(cfg.Log.Handler(), slog.LevelWarn),
	}
	return p
}

// target is the destination of one proxied request.
type target struct {
	mount    Mount
	upstream Upstream
}

type targetKey struct{}

// ServeHTTP implements http.Handler.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	m, ok := p.match(r.URL.Path)
	if !ok {
		p.next.ServeHTTP(w, r)
		return
	}
	up, err := p.resolve(m.Plugin)
	if err != nil {
		unavailable(w, err.Error())
		return
	}
	// A proxied response may be a stream or a long poll: it is bounded per
	// write, not as a whole (see internal/longlived).
	sw, r := longlived.Stream(w, r, 0)
	ctx := context.WithValue(r.Context(), targetKey{}, target{mount: m, upstream: up})
	p.rp.ServeHTTP(sw, r.WithContext(ctx))
}

// match returns the mount path is under.
func (p *Proxy) match(path string) (Mount, bool) {
	for _, m := range p.mounts {
		if path == m.Path || strings.HasPrefix(path, m.Path+"/") {
			return m, true
		}
	}
	return Mount{}, false
}

// rewrite turns the incoming request into the one sent to the plugin.
func rewrite(pr *httputil.ProxyRequest) {
	t := pr.In.Context().Value(targetKey{}).(target)
	out := pr.Out
	out.URL.Scheme, out.URL.Host = "http", t.upstream.Addr
	out.URL.Path = stripMount(pr.In.URL.Path, t.mount.Path)
	out.URL.RawPath = ""
	if raw := pr.In.URL.RawPath; raw != "" && (raw == t.mount.Path || strings.HasPrefix(raw, t.mount.Path+"/")) {
		out.URL.RawPath = stripMount(raw, t.mount.Path)
	}
	out.Host = pr.In.Host
	for _, h := range []string{"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto",
		"X-Real-Ip", pluginproto.HeaderForwardedFor, pluginproto.HeaderProxyToken} {
		out.Header.Del(h)
	}
	if host, _, err := net.SplitHostPort(pr.In.RemoteAddr); err == nil {
		out.Header.Set(pluginproto.HeaderForwardedFor, host)
	}
	if t.upstream.Token != "" {
		out.Header.Set(pluginproto.HeaderProxyToken, t.upstream.Token)
	}
}

// stripMount removes the mount prefix from path; the mount itself maps
// to "/".
func stripMount(path, mount string) string {
	if rest := strings.TrimPrefix(path, mount); rest != "" {
		return rest
	}
	return "/"
}

// upstreamFailed answers a request the plugin failed before responding:
// 503 if the plugin did not accept the connection (it just went away),
// else 502.
func (p *Proxy) upstreamFailed(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil {
		return // the caller went away
	}
	t, _ := r.Context().Value(targetKey{}).(target)
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		p.log.Warn("proxy: plugin not accepting connections", "plugin", t.mount.Plugin, "err", err)
		unavailable(w, "plugin "+t.mount.Plugin+" is not accepting connections")
		return
	}
	p.log.Warn("proxy: plugin failed", "plugin", t.mount.Plugin, "method", r.Method, "path", r.URL.Path, "err", err)
	writeError(w, http.StatusBadGateway, "bad_gateway", "plugin "+t.mount.Plugin+" failed to answer: "+err.Error())
}

// unavailable answers 503 plugin_unavailable with Retry-After.
func unavailable(w http.ResponseWriter, message string) {
	w.Header().Set("Retry-After", strconv.Itoa(retryAfter))
	writeError(w, http.StatusServiceUnavailable, "plugin_unavailable", message)
}

// writeError writes the project's JSON error envelope, never cached.
func writeError(w http.ResponseWriter, status int, code, message string) {
	w.Header().Set("Cache-Control", "no-store")
	httpjson.Write(w, status, code, message)
}
