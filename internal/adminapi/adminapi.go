// Package adminapi serves the runtime's admin HTTP API under
// /api/admin/v1: the plugins and their states, operator start, stop and
// restart, and the runtime's own health.
//
// Errors use the project's envelope {"error":{"code","message"}}. With a
// token configured, every request except GET /api/admin/v1/health needs
// "Authorization: Bearer <token>" (the scheme in any case). A
// state-changing request (the actions) is refused when a browser page of
// another origin sends it (403 origin_not_allowed), when it carries
// neither "Content-Type: application/json" nor a bearer token (415
// unsupported_media_type: a simple cross-site request cannot carry
// either), and acts only once its whole body has arrived (413
// body_too_large beyond [MaxBodyBytes], 400 incomplete_body, 408
// request_timeout). The Host allow-list is the runtime's, in front of
// this handler.
package adminapi

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/home-console/client-manager/internal/httpjson"
	"github.com/home-console/client-manager/internal/longlived"
	"github.com/home-console/client-manager/internal/origin"
	"github.com/home-console/client-manager/internal/pluginstate"
	"github.com/home-console/client-manager/internal/ratelimit"
)

// Prefix is the path prefix of every admin API route.
const Prefix = "/api/admin/v1"

// Plugins is what the admin API needs of the runtime's supervision (the
// runtime passes its supervisor group). Its methods must be safe for
// concurrent use. A name no plugin has gives an error matching
// [pluginstate.ErrUnknownPlugin]; an action that does not apply to the
// plugin's state, a [*pluginstate.TransitionError]. Start and Restart
// return once the plugin runs or has failed, Stop once it is stopped.
type Plugins interface {
	// List returns every plugin, sorted by name.
	List() []pluginstate.Snapshot
	Snapshot(name string) (pluginstate.Snapshot, error)
	Start(ctx context.Context, name string) (pluginstate.Snapshot, error)
	Stop(ctx context.Context, name string) (pluginstate.Snapshot, error)
	Restart(ctx context.Context, name string) (pluginstate.Snapshot, error)
}

// Config configures the admin API.
type Config struct {
	// Token, if not empty, is the bearer token every request but the
	// health check must carry.
	Token string
	// Version is the runtime's version, reported by the health check.
	Version string
	// StartedAt is when the runtime started.
	StartedAt time.Time
	// FailureRate and FailureBurst bound wrong-token attempts per second
	// per caller IP (defaults 1/s, burst 10): past them the caller gets 429
	// and no token is checked, so a token cannot be guessed at network
	// speed. Callers with the right token are never limited.
	FailureRate  float64
	FailureBurst int
	// Origins are the browser origins, besides the addressed host's own,
	// allowed to send state-changing requests.
	Origins origin.Policy
	// BodyTimeout bounds receiving a state-changing request's body
	// (default [DefaultBodyTimeout]).
	BodyTimeout time.Duration
}

// server holds the handlers' dependencies.
type server struct {
	plugins Plugins
	cfg     Config
	log     *slog.Logger
	// failures limits wrong-token attempts per caller IP.
	failures *ratelimit.Limiter
}

// New returns the admin API handler over plugins.
func New(plugins Plugins, cfg Config, log *slog.Logger) http.Handler {
	if cfg.FailureRate <= 0 {
		cfg.FailureRate, cfg.FailureBurst = 1, 10
	}
	s := &server{plugins: plugins, cfg: cfg, log: log, failures: ratelimit.New(cfg.FailureRate, cfg.FailureBurst, 0)}
	r := httpjson.NewEngine()
	api := r.Group(Prefix)
	api.GET("/health", s.health)
	authed := api.Group("", s.authenticate)
	authed.GET("/plugins", s.list)
	authed.GET("/plugins/:name", s.get)
	acts := authed.Group("", s.guards()...)
	acts.POST("/plugins/:name/start", s.action("start", start))
	acts.POST("/plugins/:name/stop", s.action("stop", stop))
	acts.POST("/plugins/:name/restart", s.action("restart", restart))
	return r
}

// authenticate checks the bearer token, in constant time, when one is
// configured. A caller over its wrong-token limit gets 429 before any
// check.
func (s *server) authenticate(c *gin.Context) {
	if s.cfg.Token == "" {
		return
	}
	ip, now := c.RemoteIP(), time.Now()
	if wait, ok := s.failures.Ready(ip, now); !ok {
		c.Header("Retry-After", strconv.Itoa(ratelimit.RetryAfter(wait)))
		httpjson.Error(c, http.StatusTooManyRequests, "rate_limited", "too many wrong tokens from this address; retry later")
		return
	}
	got, ok := httpjson.BearerToken(c.Request.Header)
	gotSum, wantSum := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(s.cfg.Token))
	if !ok || subtle.ConstantTimeCompare(gotSum[:], wantSum[:]) != 1 {
		s.failures.Allow(ip, now)
		c.Header("WWW-Authenticate", `Bearer realm="runtime admin API"`)
		httpjson.Error(c, http.StatusUnauthorized, "unauthorized", "a valid bearer token is required (Authorization: Bearer <token>)")
	}
}

func (s *server) health(c *gin.Context) {
	counts := make(map[pluginstate.State]int, len(pluginstate.States))
	for _, st := range pluginstate.States {
		counts[st] = 0
	}
	list := s.plugins.List()
	for _, p := range list {
		counts[p.State]++
	}
	c.JSON(http.StatusOK, gin.H{
		"status":         "ok",
		"version":        s.cfg.Version,
		"pid":            os.Getpid(),
		"started_at":     s.cfg.StartedAt.UTC().Format(time.RFC3339),
		"uptime_seconds": int64(time.Since(s.cfg.StartedAt).Seconds()),
		"plugins":        gin.H{"total": len(list), "states": counts},
	})
}

func (s *server) list(c *gin.Context) {
	list := s.plugins.List()
	items := make([]pluginJSON, len(list))
	for i, p := range list {
		items[i] = toJSON(p, time.Now())
	}
	c.JSON(http.StatusOK, gin.H{"items": items})
}

func (s *server) get(c *gin.Context) {
	snap, err := s.plugins.Snapshot(c.Param("name"))
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, toJSON(snap, time.Now()))
}

// maxActionTime is how long an action's answer may take before the
// server's write timeout runs: beyond, the action is carried out but its
// answer is lost.
const maxActionTime = 10 * time.Minute

// operation is an operator action on one plugin.
type operation func(ctx context.Context, p Plugins, name string) (pluginstate.Snapshot, error)

// start waits for the outcome only as long as the client does; the start
// itself goes on.
func start(ctx context.Context, p Plugins, name string) (pluginstate.Snapshot, error) {
	return p.Start(ctx, name)
}

// stop and restart detach from the request: a client that goes away must
// not turn a graceful stop into a kill.
func stop(ctx context.Context, p Plugins, name string) (pluginstate.Snapshot, error) {
	return p.Stop(context.WithoutCancel(ctx), name)
}

func restart(ctx context.Context, p Plugins, name string) (pluginstate.Snapshot, error) {
	return p.Restart(context.WithoutCancel(ctx), name)
}

// action returns the handler of an operator action. Start and restart
// answer once the plugin runs or has failed; stop once it is stopped.
func (s *server) action(action string, op operation) gin.HandlerFunc {
	return func(c *gin.Context) {
		name := c.Param("name")
		if _, err := s.plugins.Snapshot(name); err != nil {
			s.fail(c, err)
			return
		}
		s.log.Info("operator action", "plugin", name, "action", action, "remote", c.ClientIP())
		// A stop or start lasts as long as the plugin's timeouts say; its
		// small answer must not be cut by the server's.
		_ = longlived.Extend(c.Writer, c.Request, maxActionTime)
		snap, err := op(c.Request.Context(), s.plugins, name)
		if err != nil {
			s.fail(c, err)
			return
		}
		s.log.Info("operator action done", "plugin", name, "action", action, "state", snap.State)
		c.JSON(http.StatusOK, toJSON(snap, time.Now()))
	}
}

// fail maps an error to its HTTP status and code.
func (s *server) fail(c *gin.Context, err error) {
	var te *pluginstate.TransitionError
	switch {
	case errors.Is(err, pluginstate.ErrUnknownPlugin):
		httpjson.Error(c, http.StatusNotFound, "unknown_plugin", err.Error())
	case errors.As(err, &te):
		httpjson.Error(c, http.StatusConflict, "invalid_transition", err.Error())
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		httpjson.Error(c, http.StatusGatewayTimeout, "timeout", err.Error())
	default:
		s.log.Error("admin API", "err", err)
		httpjson.Error(c, http.StatusInternalServerError, "internal", err.Error())
	}
}
