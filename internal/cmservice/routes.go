package cmservice

import (
	"cmp"
	"context"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/home-console/client-manager/internal/access"
	"github.com/home-console/client-manager/internal/api"
	"github.com/home-console/client-manager/internal/fleet"
	"github.com/home-console/client-manager/internal/httpjson"
	"github.com/home-console/client-manager/internal/ratelimit"
	"github.com/home-console/client-manager/internal/version"
	"github.com/home-console/client-manager/pkg/agentproto"
)

// Defaults of the operator API: the per-caller rate limit and the
// largest request body.
const (
	DefaultAPIRate      = 50
	DefaultAPIBurst     = 100
	DefaultMaxBodyBytes = 1 << 20
)

// auditRetryInterval is how often audit outcomes the store refused are
// tried again.
const auditRetryInterval = time.Second

func (s *Service) routes(a *app) http.Handler {
	r := httpjson.NewEngine()
	r.Use(a.countResponses)
	r.GET("/health", s.handleHealth)
	r.GET("/health/live", s.handleLive)
	r.GET("/health/ready", s.handleReady)
	r.GET(agentproto.PathWebSocket, gin.WrapH(a.hub.Handler()))
	r.POST(agentproto.PathEnroll, gin.WrapH(a.enroll.Handler()))
	srv := &api.Server{
		Store:        a.store,
		Presence:     presence{a.hub},
		Commands:     a.dispatch,
		Enrollment:   a.enroll,
		Bus:          a.bus,
		Tokens:       a.tokens,
		Policy:       s.commandPolicy(),
		Log:          s.log,
		MaxBodyBytes: cmp.Or(s.cfg.MaxBodyBytes, DefaultMaxBodyBytes),
		Limiter:      ratelimit.New(cmp.Or(s.cfg.APIRate, DefaultAPIRate), cmp.Or(s.cfg.APIBurst, DefaultAPIBurst), 0),
		Origins:      a.origins,
		BodyTimeout:  s.cfg.timeouts().Read,

		StreamQueue:        s.cfg.EventQueue,
		StreamWriteTimeout: s.cfg.EventWriteTimeout,
		StreamDropped:      a.streamDropped,

		Terminals:    a.sessions,
		Files:        a.sessions,
		TerminalRole: s.cfg.Sessions.TerminalRole,
		FilesRole:    s.cfg.Sessions.FilesRole,
	}
	r.GET("/metrics", append(srv.Protect(access.RoleViewer), gin.WrapH(a.metrics))...)
	srv.Register(r)
	a.api = srv
	a.background(func(ctx context.Context) { srv.RetryAudit(ctx, auditRetryInterval) })
	return r
}

func (s *Service) handleHealth(c *gin.Context) {
	st := s.State()
	status := http.StatusOK
	if st != StateReady {
		status = http.StatusServiceUnavailable
	}
	c.JSON(status, gin.H{
		"status":           string(st),
		"service":          "client-manager",
		"version":          version.Get().Version,
		"instance_id":      s.instanceID,
		"uptime_seconds":   int64(time.Since(s.startedAt).Seconds()),
		"agents_connected": s.agentsConnected(),
		"timestamp":        time.Now().UTC().Format(time.RFC3339Nano),
	})
}

func (s *Service) handleLive(c *gin.Context) {
	c.JSON(http.StatusOK, gin.H{"status": "alive", "timestamp": time.Now().UTC().Format(time.RFC3339Nano)})
}

// handleReady answers 200 while the service is ready and its store takes
// writes; 503 not_ready while it is not ready, or 503
// storage_unavailable with the store's reason while the store refuses
// writes (sqlite.Store.Watch notices the recovery within a second).
func (s *Service) handleReady(c *gin.Context) {
	if st := s.State(); st != StateReady {
		httpjson.Error(c, http.StatusServiceUnavailable, "not_ready", "client manager is "+string(st))
		return
	}
	if err := s.storeWritable(); err != nil {
		httpjson.Error(c, http.StatusServiceUnavailable, string(fleet.CodeStorageUnavailable), fleet.MessageOf(err))
		return
	}
	c.JSON(http.StatusOK, gin.H{"status": "ready", "timestamp": time.Now().UTC().Format(time.RFC3339Nano)})
}

func (s *Service) commandPolicy() access.CommandPolicy {
	if len(s.cfg.OperatorCommands) == 0 {
		return access.CommandPolicy{Operator: access.DefaultOperatorCommands}
	}
	return access.CommandPolicy{Operator: s.cfg.OperatorCommands}
}
