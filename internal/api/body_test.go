package api

import (
	"bufio"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/home-console/client-manager/internal/httpjson"
)

// TestSlowBodyGets408 sends a body that stops half way: the server answers
// 408 once BodyTimeout passes instead of holding the request open.
func TestSlowBodyGets408(t *testing.T) {
	s := &Server{MaxBodyBytes: 1 << 20, BodyTimeout: 200 * time.Millisecond, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	r := httpjson.NewEngine()
	r.POST("/x", func(c *gin.Context) {
		var v map[string]any
		if s.decodeJSON(c, &v) {
			c.JSON(http.StatusOK, v)
		}
	})
	srv := httptest.NewServer(r)
	defer srv.Close()

	conn, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	_, _ = io.WriteString(conn, "POST /x HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"a\":")
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusRequestTimeout || !strings.Contains(string(body), `"request_timeout"`) {
		t.Fatalf("slow body = %d %s", res.StatusCode, body)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("answered after %s", d)
	}

	res2, err := http.Post(srv.URL+"/x", "application/json", strings.NewReader(`{"a":1}`))
	if err != nil {
		t.Fatal(err)
	}
	res2.Body.Close()
	if res2.StatusCode != http.StatusOK {
		t.Fatalf("a normal body after the slow one = %d", res2.StatusCode)
	}
}
