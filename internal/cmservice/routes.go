package cmservice

import (
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/home-console/client-manager/internal/httpjson"
)

func (s *Service) routes() http.Handler {
	r := httpjson.NewEngine()
	r.GET("/health", s.handleHealth)
	r.GET("/health/live", s.handleLive)
	r.GET("/health/ready", s.handleReady)
	r.GET("/api/clients", s.handleListClients)
	return r
}

func (s *Service) handleHealth(c *gin.Context) {
	st := s.State()
	status := http.StatusOK
	if st != StateReady {
		status = http.StatusServiceUnavailable
	}
	c.JSON(status, gin.H{
		"status":         string(st),
		"service":        "client-manager",
		"version":        Version,
		"instance_id":    s.instanceID,
		"uptime_seconds": int64(time.Since(s.startedAt).Seconds()),
		"timestamp":      time.Now().UTC().Format(time.RFC3339Nano),
	})
}

func (s *Service) handleLive(c *gin.Context) {
	c.JSON(http.StatusOK, gin.H{"status": "alive", "timestamp": time.Now().UTC().Format(time.RFC3339Nano)})
}

func (s *Service) handleReady(c *gin.Context) {
	if st := s.State(); st != StateReady {
		httpjson.Error(c, http.StatusServiceUnavailable, "not_ready", "client manager is "+string(st))
		return
	}
	c.JSON(http.StatusOK, gin.H{"status": "ready", "timestamp": time.Now().UTC().Format(time.RFC3339Nano)})
}

func (s *Service) handleListClients(c *gin.Context) {
	c.JSON(http.StatusOK, gin.H{"items": []any{}, "total": 0, "limit": 100, "offset": 0})
}
