package api

import (
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/home-console/client-manager/internal/access"
	"github.com/home-console/client-manager/internal/httpjson"
)

// enrollmentTokenBody is the body of POST /api/enrollment-tokens.
type enrollmentTokenBody struct {
	Name string   `json:"name"`
	Uses int      `json:"uses"`
	TTL  duration `json:"ttl"`
}

// createEnrollmentToken answers 201 with the token, shown this once.
func (s *Server) createEnrollmentToken(c *gin.Context) {
	var body enrollmentTokenBody
	if !s.decodeJSON(c, &body) {
		return
	}
	if body.Uses == 0 {
		body.Uses = 1
	}
	if body.TTL == 0 {
		body.TTL = duration(24 * time.Hour)
	}
	if body.Uses < 1 || body.Uses > 100000 {
		httpjson.Error(c, http.StatusBadRequest, "invalid_token_request", "uses must be from 1 to 100000")
		return
	}
	if body.TTL < duration(time.Minute) || body.TTL > duration(365*24*time.Hour) {
		httpjson.Error(c, http.StatusBadRequest, "invalid_token_request", "ttl must be from 1m to 8760h")
		return
	}
	if len(body.Name) > 200 {
		httpjson.Error(c, http.StatusBadRequest, "invalid_token_request", "name must be at most 200 bytes")
		return
	}
	p, _ := access.From(c)
	token, t, err := s.Enrollment.CreateToken(c.Request.Context(), body.Name, body.Uses, time.Duration(body.TTL), p.Name)
	if err != nil {
		s.storeError(c, "enrollment token", err)
		return
	}
	c.JSON(http.StatusCreated, gin.H{"token": token, "enrollment_token": t})
}

// listEnrollmentTokens answers GET /api/enrollment-tokens (no secrets).
func (s *Server) listEnrollmentTokens(c *gin.Context) {
	ts, err := s.Store.ListEnrollmentTokens(c.Request.Context())
	writeAll(s, c, "enrollment tokens", ts, err)
}

// deleteEnrollmentToken answers DELETE /api/enrollment-tokens/:id.
func (s *Server) deleteEnrollmentToken(c *gin.Context) {
	if err := s.Store.DeleteEnrollmentToken(c.Request.Context(), c.Param("id")); err != nil {
		s.storeError(c, "enrollment token", err)
		return
	}
	c.Status(http.StatusNoContent)
}
