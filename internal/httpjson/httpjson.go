// Package httpjson holds what every HTTP API of the project shares: the
// JSON error envelope {"error":{"code":"...","message":"..."}}, the gin
// engine set up for it, and the security headers.
package httpjson

import (
	"encoding/json"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"
)

// ErrorBody is the error envelope.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail is a machine-readable code and a human-readable message.
type ErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Error aborts the request with status and the error envelope.
func Error(c *gin.Context, status int, code, message string) {
	c.AbortWithStatusJSON(status, ErrorBody{Error: ErrorDetail{Code: code, Message: message}})
}

// NewEngine returns a gin engine in release mode with no default middleware
// except panic recovery that answers with the JSON envelope and
// [SecurityHeaders], and JSON 404/405 handlers. It never writes to stdout.
// Forwarding headers are not trusted: Context.ClientIP is the TCP peer.
func NewEngine() *gin.Engine {
	gin.SetMode(gin.ReleaseMode)
	e := gin.New()
	e.HandleMethodNotAllowed = true
	_ = e.SetTrustedProxies(nil) // cannot fail without proxies to parse
	e.Use(SecurityHeaders, gin.CustomRecoveryWithWriter(nil, func(c *gin.Context, _ any) {
		Error(c, http.StatusInternalServerError, "internal", "internal server error")
	}))
	e.NoRoute(func(c *gin.Context) {
		Error(c, http.StatusNotFound, "not_found", "no route for "+c.Request.Method+" "+c.Request.URL.Path)
	})
	e.NoMethod(func(c *gin.Context) {
		Error(c, http.StatusMethodNotAllowed, "method_not_allowed", c.Request.Method+" is not allowed on "+c.Request.URL.Path)
	})
	return e
}

// Write writes status and the error envelope to a plain net/http response.
// Gin handlers use [Error], which also aborts the handler chain.
func Write(w http.ResponseWriter, status int, code, message string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(ErrorBody{Error: ErrorDetail{Code: code, Message: message}})
}

// BearerToken returns the token of an "Authorization: Bearer <token>"
// header. The scheme is matched case-insensitively (RFC 9110 §11.1);
// ok is false when the header is missing, has another scheme, or carries
// no token.
func BearerToken(h http.Header) (token string, ok bool) {
	scheme, token, found := strings.Cut(h.Get("Authorization"), " ")
	if !found || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}
