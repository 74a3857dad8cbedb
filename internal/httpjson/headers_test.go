package httpjson

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/gin-gonic/gin"
)

func TestSecurityHeaders(t *testing.T) {
	e := NewEngine()
	e.GET("/api/x", func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{}) })
	e.GET("/health", func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{}) })
	e.GET("/api/panic", func(*gin.Context) { panic("boom") })
	always := map[string]string{
		"X-Content-Type-Options":  "nosniff",
		"X-Frame-Options":         "DENY",
		"Referrer-Policy":         "no-referrer",
		"Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
	}
	tests := []struct {
		method, path string
		tls          bool
		status       int
		noStore      bool
	}{
		{"GET", "/api/x", false, 200, true},
		{"GET", "/health", false, 200, false},
		{"GET", "/api/nowhere", false, 404, true},
		{"POST", "/api/x", false, 405, true},
		{"GET", "/api/panic", false, 500, true},
		{"GET", "/api/x", true, 200, true},
		{"GET", "/apix", false, 404, false},
	}
	for _, tt := range tests {
		req := httptest.NewRequest(tt.method, tt.path, nil)
		if tt.tls {
			req.TLS = &tls.ConnectionState{}
		}
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, req)
		h := rec.Result().Header
		if rec.Code != tt.status {
			t.Errorf("%s %s = %d, want %d", tt.method, tt.path, rec.Code, tt.status)
		}
		for k, v := range always {
			if got := h.Get(k); got != v {
				t.Errorf("%s %s: %s = %q, want %q", tt.method, tt.path, k, got, v)
			}
		}
		if got := h.Get("Cache-Control") == "no-store"; got != tt.noStore {
			t.Errorf("%s %s: Cache-Control %q, want no-store %v", tt.method, tt.path, h.Get("Cache-Control"), tt.noStore)
		}
		if got := h.Get("Strict-Transport-Security") != ""; got != tt.tls {
			t.Errorf("%s %s: Strict-Transport-Security %q with TLS %v", tt.method, tt.path, h.Get("Strict-Transport-Security"), tt.tls)
		}
	}
}

func TestForwardingHeadersNotTrusted(t *testing.T) {
	e := NewEngine()
	e.GET("/ip", func(c *gin.Context) { c.String(http.StatusOK, c.ClientIP()) })
	req := httptest.NewRequest("GET", "/ip", nil)
	req.RemoteAddr = "192.0.2.7:4000"
	req.Header.Set("X-Forwarded-For", "127.0.0.1")
	req.Header.Set("X-Real-IP", "127.0.0.1")
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, req)
	if got := rec.Body.String(); got != "192.0.2.7" {
		t.Fatalf("ClientIP = %q, want the TCP peer 192.0.2.7", got)
	}
}
