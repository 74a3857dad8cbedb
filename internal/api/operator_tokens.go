package api

import (
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/home-console/client-manager/internal/access"
	"github.com/home-console/client-manager/internal/httpjson"
)

// operatorTokenBody is the body of POST /api/tokens.
type operatorTokenBody struct {
	Name string   `json:"name"`
	Role string   `json:"role"`
	TTL  duration `json:"ttl"`
}

// createOperatorToken answers 201 with a new operator token, shown once.
func (s *Server) createOperatorToken(c *gin.Context) {
	var body operatorTokenBody
	if !s.decodeJSON(c, &body) {
		return
	}
	role, err := access.ParseRole(body.Role)
	if err != nil {
		httpjson.Error(c, http.StatusBadRequest, "invalid_token_request", err.Error())
		return
	}
	if body.Name == "" || len(body.Name) > 200 {
		httpjson.Error(c, http.StatusBadRequest, "invalid_token_request", "name is required, at most 200 bytes")
		return
	}
	if body.TTL < 0 || body.TTL > duration(10*365*24*time.Hour) {
		httpjson.Error(c, http.StatusBadRequest, "invalid_token_request", "ttl must be from 0 (no expiry) to 87600h")
		return
	}
	p, _ := access.From(c)
	token, t, err := s.Tokens.Create(c.Request.Context(), body.Name, role, time.Duration(body.TTL), p.Name)
	if err != nil {
		s.storeError(c, "operator token", err)
		return
	}
	c.JSON(http.StatusCreated, gin.H{"token": token, "operator_token": t})
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
