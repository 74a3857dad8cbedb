package cmservice

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// TestAPIRateLimitPerCaller: each principal has its own bucket, failed
// authentications spend their address's bucket, excess gets 429 with
// Retry-After, refused requests are not audited, and the health endpoints
// are not limited.
func TestAPIRateLimitPerCaller(t *testing.T) {
	_, base := startService(t, Config{APIRate: 0.5, APIBurst: 5})
	admin, _ := createToken(t, base, "admin", "")
	viewer, _ := createToken(t, base, "viewer", admin)
	as := func(token string) []string { return []string{"Authorization", "Bearer " + token} }

	for i := range 5 {
		if code, body := call(t, "GET", base+"/api/clients", "", as(viewer)...); code != 200 {
			t.Fatalf("viewer request %d = %d %v", i, code, body)
		}
	}
	res := do(t, "POST", base+"/api/tokens", `{"name":"x","role":"viewer"}`, as(viewer)...)
	if res.StatusCode != http.StatusTooManyRequests || res.code != "rate_limited" {
		t.Fatalf("6th viewer request = %d %s, want 429 rate_limited", res.StatusCode, res.code)
	}
	if s, err := strconv.Atoi(res.Header.Get("Retry-After")); err != nil || s < 1 {
		t.Fatalf("Retry-After %q", res.Header.Get("Retry-After"))
	}
	if code, _ := call(t, "GET", base+"/api/clients", "", as(admin)...); code != 200 {
		t.Fatalf("admin limited by the viewer's excess: %d", code)
	}

	for i := range 5 {
		if code, _ := call(t, "GET", base+"/api/clients", "", as("cmop_guess"+strconv.Itoa(i))...); code != 401 {
			t.Fatalf("wrong token %d = %d, want 401", i, code)
		}
	}
	if code, body := call(t, "GET", base+"/api/clients", "", as("cmop_guess")...); code != 429 || errCode(body) != "rate_limited" {
		t.Fatalf("6th wrong token = %d %v, want 429", code, body)
	}
	if code, _ := call(t, "GET", base+"/api/clients", "", as(admin)...); code != 200 {
		t.Fatalf("admin limited by failed attempts from its address: %d", code)
	}
	if code, _ := call(t, "GET", base+"/health", ""); code != 200 {
		t.Fatalf("/health = %d", code)
	}
	code, audit := call(t, "GET", base+"/api/audit", "", as(admin)...)
	if entries := fmt.Sprint(audit); code != 200 || !strings.Contains(entries, "result:201") || strings.Contains(entries, "result:429") {
		t.Fatalf("audit = %d %v, want no 429 entries", code, audit)
	}
}

// TestBrowserCallers: a web page of another origin cannot use the API,
// not even the loopback exemption, and a DNS-rebound host name does not
// get the exemption either.
func TestBrowserCallers(t *testing.T) {
	_, base := startService(t, Config{AllowedOrigins: []string{"https://console.example.com"}})
	body := `{"name":"csrf","role":"admin"}`
	if code, got := call(t, "POST", base+"/api/tokens", body, "Origin", "https://evil.example", "Content-Type", "text/plain"); code != 403 || errCode(got) != "origin_not_allowed" {
		t.Fatalf("cross-origin POST = %d %v, want 403 origin_not_allowed", code, got)
	}
	if res := do(t, "GET", base+"/api/clients", "", "Host", "rebound.example:10000"); res.StatusCode != 401 {
		t.Fatalf("DNS-rebound Host = %d %s, want 401", res.StatusCode, res.code)
	}
	if code, got := call(t, "GET", base+"/api/tokens", "", "Origin", strings.Replace(base, "127.0.0.1", "localhost", 1)); code != 403 {
		t.Fatalf("other-origin GET = %d %v, want 403", code, got)
	}
	if code, got := call(t, "GET", base+"/api/tokens", "", "Origin", base); code != 200 || got["total"] != float64(0) {
		t.Fatalf("same-origin GET = %d %v, want 200 and no token created", code, got)
	}
	if code, got := call(t, "GET", base+"/api/clients", "", "Origin", "https://console.example.com"); code != 200 {
		t.Fatalf("allowed origin = %d %v", code, got)
	}
}

// response is an answer with its error code, if any.
type response struct {
	*http.Response
	code string
}

// do sends a request; headers are name, value pairs ("Host" sets the
// Host the request addresses).
func do(t *testing.T, method, url, body string, headers ...string) response {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i] == "Host" {
			req.Host = headers[i+1]
			continue
		}
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	var e struct{ Error struct{ Code string } }
	_ = json.Unmarshal(raw, &e)
	return response{res, e.Error.Code}
}
