package httpjson

import (
	"strings"

	"github.com/gin-gonic/gin"
)

// SecurityHeaders is middleware setting the headers every response of the
// project's HTTP APIs carries. The APIs serve JSON and event streams, never
// pages, so a browser is told to render nothing of them: no MIME sniffing,
// no framing, no active content, no referrer. Responses under /api are not
// cached (they hold fleet state and, once, new tokens). Over TLS,
// Strict-Transport-Security keeps browsers on HTTPS for a year.
func SecurityHeaders(c *gin.Context) {
	h := c.Writer.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
	if p := c.Request.URL.Path; p == "/api" || strings.HasPrefix(p, "/api/") {
		h.Set("Cache-Control", "no-store")
	}
	if c.Request.TLS != nil {
		h.Set("Strict-Transport-Security", "max-age=31536000")
	}
}
