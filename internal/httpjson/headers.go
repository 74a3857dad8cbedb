package httpjson

import (
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"
)

// SecurityHeaders is middleware setting the headers every response of the
// project's HTTP APIs carries (see [SetSecurityHeaders]).
func SecurityHeaders(c *gin.Context) { SetSecurityHeaders(c.Writer.Header(), c.Request) }

// SetSecurityHeaders sets, in h, the headers every answer to r carries.
// The APIs serve JSON and event streams, never pages, so a browser is
// told to render nothing of them: no MIME sniffing, no framing, no active
// content, no referrer. Responses under /api are not cached (they hold
// fleet state and, once, new tokens). Over TLS, Strict-Transport-Security
// keeps browsers on HTTPS for a year. Handlers outside gin use it
// directly.
func SetSecurityHeaders(h http.Header, r *http.Request) {
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
	if p := r.URL.Path; p == "/api" || strings.HasPrefix(p, "/api/") {
		h.Set("Cache-Control", "no-store")
	}
	if r.TLS != nil {
		h.Set("Strict-Transport-Security", "max-age=31536000")
	}
}
