package api

import (
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/home-console/client-manager/internal/access"
	"github.com/home-console/client-manager/internal/fleet"
)

// Limits of POST /api/tokens.
const (
	maxOperatorTokenName = 200
	maxOperatorTokenTTL  = 10 * 365 * 24 * time.Hour
)

// operatorTokenBody is the body of POST /api/tokens.
type operatorTokenBody struct {
	Name string   `json:"name"`
	Role string   `json:"role"`
	TTL  duration `json:"ttl"`
}

// operatorTokenAnswer is the answer to POST /api/tokens.
type operatorTokenAnswer struct {
	// Token is the secret, shown only here.
	Token         string              `json:"token"`
	OperatorToken fleet.OperatorToken `json:"operator_token"`
}

// createOperatorToken answers 201 with a new operator token, shown once.
func (s *Server) createOperatorToken(c *gin.Context) {
	var body operatorTokenBody
	if !s.decodeJSON(c, &body) {
		return
	}
	role, err := access.ParseRole(body.Role)
	switch {
	case err != nil:
		s.failf(c, codeInvalidTokenRequest, "%v", err)
		return
	case body.Name == "" || len(body.Name) > maxOperatorTokenName:
		s.failf(c, codeInvalidTokenRequest, "name is required, at most %d bytes", maxOperatorTokenName)
		return
	case body.TTL < 0 || time.Duration(body.TTL) > maxOperatorTokenTTL:
		s.failf(c, codeInvalidTokenRequest, "ttl must be from 0 (no expiry) to %s", maxOperatorTokenTTL)
		return
	}
	p, _ := access.From(c)
	token, t, err := s.Tokens.Create(c.Request.Context(), body.Name, role, time.Duration(body.TTL), p.Name)
	if err != nil {
		s.storeError(c, "operator token", err)
		return
	}
	c.JSON(http.StatusCreated, operatorTokenAnswer{Token: token, OperatorToken: t})
}

// listOperatorTokens answers GET /api/tokens (no secrets).
func (s *Server) listOperatorTokens(c *gin.Context) {
	ts, err := s.Store.ListOperatorTokens(c.Request.Context())
	writeAll(s, c, "operator tokens", ts, err)
}

// revokeOperatorToken answers DELETE /api/tokens/:id; the token stops
// working at once.
func (s *Server) revokeOperatorToken(c *gin.Context) {
	if err := s.Store.RevokeOperatorToken(c.Request.Context(), c.Param("id"), time.Now()); err != nil {
		s.storeError(c, "operator token", err)
		return
	}
	c.Status(http.StatusNoContent)
}
