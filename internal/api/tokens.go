package api

import (
	"cmp"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/home-console/client-manager/internal/access"
	"github.com/home-console/client-manager/internal/fleet"
)

// Limits of POST /api/enrollment-tokens.
const (
	defaultEnrollmentUses = 1
	maxEnrollmentUses     = 100000
	defaultEnrollmentTTL  = 24 * time.Hour
	minEnrollmentTTL      = time.Minute
	maxEnrollmentTTL      = 365 * 24 * time.Hour
	// maxEnrollmentName is the enrollment service's limit on token names.
	maxEnrollmentName = 128
)

// enrollmentTokenBody is the body of POST /api/enrollment-tokens.
type enrollmentTokenBody struct {
	Name string   `json:"name"`
	Uses int      `json:"uses"`
	TTL  duration `json:"ttl"`
}

// enrollmentTokenAnswer is the answer to POST /api/enrollment-tokens.
type enrollmentTokenAnswer struct {
	// Token is the secret, shown only here.
	Token           string                `json:"token"`
	EnrollmentToken fleet.EnrollmentToken `json:"enrollment_token"`
}

// createEnrollmentToken answers 201 with the token, shown this once.
func (s *Server) createEnrollmentToken(c *gin.Context) {
	var body enrollmentTokenBody
	if !s.decodeJSON(c, &body) {
		return
	}
	body.Uses = cmp.Or(body.Uses, defaultEnrollmentUses)
	ttl := cmp.Or(time.Duration(body.TTL), defaultEnrollmentTTL)
	switch {
	case body.Uses < 1 || body.Uses > maxEnrollmentUses:
		s.failf(c, codeInvalidTokenRequest, "uses must be from 1 to %d", maxEnrollmentUses)
		return
	case ttl < minEnrollmentTTL || ttl > maxEnrollmentTTL:
		s.failf(c, codeInvalidTokenRequest, "ttl must be from %s to %s", minEnrollmentTTL, maxEnrollmentTTL)
		return
	case len(body.Name) > maxEnrollmentName:
		s.failf(c, codeInvalidTokenRequest, "name must be at most %d bytes", maxEnrollmentName)
		return
	}
	p, _ := access.From(c)
	token, t, err := s.Enrollment.CreateToken(c.Request.Context(), body.Name, body.Uses, ttl, p.Name)
	if err != nil {
		s.storeError(c, "enrollment token", err)
		return
	}
	c.JSON(http.StatusCreated, enrollmentTokenAnswer{Token: token, EnrollmentToken: t})
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
