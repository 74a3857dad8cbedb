package origin

import (
	"fmt"
	"net"
	"net/http"
	"path"
	"strings"

	"github.com/home-console/client-manager/internal/httpjson"
)

// Hosts is a server's allow-list of the names it may be addressed by
// (the Host header). It defeats DNS rebinding: a web page on
// evil.example that re-points its own name at 127.0.0.1 makes the
// browser send same-origin requests to a local server, but with
// "Host: evil.example", which is not on the list.
//
// Allowed are: loopback names and addresses (see [LoopbackHost]), the
// host the server listens on, and the configured patterns. A server
// listening on every address ("0.0.0.0", "::" or "") also accepts any IP
// address literal, since an address cannot be rebound; names must be
// listed. A request without Host (HTTP/1.0) does not come from a browser
// and passes.
type Hosts struct {
	listen   string // normalised listen host; "" when unspecified
	anyIP    bool   // the server listens on every address
	patterns []string
	setting  string // the variable adding patterns, named in refusals
}

// NewHosts returns the allow-list of a server listening on listenHost
// (without port), extended by patterns: host names or addresses without
// port, or shell patterns (path.Match syntax, case-insensitive) such as
// "*.example.com". setting names the configuration variable the patterns
// come from; refusals tell the caller to list the host there.
func NewHosts(listenHost string, patterns []string, setting string) (Hosts, error) {
	h := Hosts{listen: normaliseHost(listenHost), setting: setting}
	if ip := net.ParseIP(h.listen); h.listen == "" || ip != nil && ip.IsUnspecified() {
		h.listen, h.anyIP = "", true
	}
	for _, pat := range patterns {
		pat = strings.TrimSpace(pat)
		if pat == "" {
			continue
		}
		if _, err := path.Match(pat, ""); err != nil {
			return Hosts{}, fmt.Errorf("host pattern %q: %w", pat, err)
		}
		if strings.Contains(pat, "/") {
			return Hosts{}, fmt.Errorf("host pattern %q: a host name or address, without scheme or path", pat)
		}
		h.patterns = append(h.patterns, normaliseHost(pat))
	}
	return h, nil
}

// Allowed reports whether a Host header value (with or without port) is
// on the list.
func (h Hosts) Allowed(host string) bool {
	if host == "" || LoopbackHost(host) {
		return true
	}
	name := normaliseHost(host)
	switch {
	case h.listen != "" && name == h.listen:
		return true
	case h.anyIP && net.ParseIP(name) != nil:
		return true
	}
	for _, pat := range h.patterns {
		if ok, _ := path.Match(pat, name); ok {
			return true
		}
	}
	return false
}

// Check reports whether r addressed an allowed host and, if not, answers
// 421 with the JSON error [HostCode] (and the security headers).
func (h Hosts) Check(w http.ResponseWriter, r *http.Request) bool {
	if h.Allowed(r.Host) {
		return true
	}
	httpjson.SetSecurityHeaders(w.Header(), r)
	w.Header().Set("Connection", "close")
	msg := fmt.Sprintf("this server is not addressed as %q; list the name in %s to allow it", r.Host, h.setting)
	httpjson.Write(w, http.StatusMisdirectedRequest, HostCode, msg)
	return false
}

// Guard returns next behind Check: requests for a host not on the list
// are answered 421 and never reach next.
func (h Hosts) Guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h.Check(w, r) {
			next.ServeHTTP(w, r)
		}
	})
}

// HostCode is the error code of a request for a host not on the list.
const HostCode = "misdirected_request"

// LoopbackHost reports whether a Host header (with or without a port)
// names this machine's loopback interface: "localhost", a name under
// ".localhost", or a loopback IP address (127.0.0.0/8, ::1).
func LoopbackHost(host string) bool {
	host = normaliseHost(host)
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// normaliseHost returns host without port and brackets, in lower case,
// without a trailing dot.
func normaliseHost(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	return strings.TrimSuffix(strings.ToLower(strings.Trim(host, "[]")), ".")
}
