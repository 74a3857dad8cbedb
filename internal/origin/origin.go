// Package origin decides which web pages may call the client manager or
// the runtime from a browser. Browsers send an Origin header with
// cross-origin requests and with every WebSocket upgrade; agents, curl
// and other programs send none. A request without Origin, or whose Origin
// is the host it addressed, is allowed; any other origin must match one
// of the configured patterns ([Policy]). Refusing the rest stops a web
// page the operator happens to visit from using the operator's network
// position (cross-site request forgery). [Hosts] refuses requests
// addressed to a name the server does not answer to (DNS rebinding).
package origin

import (
	"cmp"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"strings"

	"github.com/home-console/client-manager/internal/httpjson"
)

// Policy is a set of allowed origin patterns. The zero Policy allows no
// cross-origin caller. It matches like coder/websocket's
// AcceptOptions.OriginPatterns, so the hub can hand the same patterns to
// the WebSocket library.
type Policy struct {
	patterns []string
	// setting names the variable listing allowed origins in refusals;
	// "" means CLIENT_MANAGER_ALLOWED_ORIGINS.
	setting string
}

// New returns a Policy allowing the origins matched by patterns: shell
// patterns (path.Match syntax, case-insensitive) over the origin's host
// ("console.example.com", "*.example.com:8443") or, when a pattern
// contains "://", over scheme://host ("https://console.example.com").
func New(patterns []string) (Policy, error) {
	var p Policy
	for _, pat := range patterns {
		pat = strings.TrimSpace(pat)
		if pat == "" {
			continue
		}
		if _, err := path.Match(pat, ""); err != nil {
			return Policy{}, fmt.Errorf("origin pattern %q: %w", pat, err)
		}
		p.patterns = append(p.patterns, pat)
	}
	return p, nil
}

// WithSetting returns p whose refusals tell the caller to list the page's
// origin in the configuration variable setting (by default
// CLIENT_MANAGER_ALLOWED_ORIGINS).
func (p Policy) WithSetting(setting string) Policy {
	p.setting = setting
	return p
}

// Patterns returns the allowed patterns.
func (p Policy) Patterns() []string { return p.patterns }

// Allowed reports whether r may be served: it carries no Origin, its
// Origin names the host r addressed, or its Origin matches a pattern.
func (p Policy) Allowed(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	u, err := url.Parse(o)
	if err != nil || u.Host == "" {
		return false
	}
	if strings.EqualFold(u.Host, r.Host) {
		return true
	}
	for _, pat := range p.patterns {
		target := u.Host
		if strings.Contains(pat, "://") {
			target = u.Scheme + "://" + u.Host
		}
		if ok, _ := path.Match(strings.ToLower(pat), strings.ToLower(target)); ok {
			return true
		}
	}
	return false
}

// Check applies the rule to r: it reports whether p allows r (see
// Allowed) and, if not, answers 403 with the JSON error Code and Message.
// Every HTTP route that refuses browser pages of other origins uses it, so
// they all refuse alike.
func (p Policy) Check(w http.ResponseWriter, r *http.Request) bool {
	if p.Allowed(r) {
		return true
	}
	msg := refusal + cmp.Or(p.setting, defaultSetting) + " to allow it"
	httpjson.Write(w, http.StatusForbidden, Code, msg)
	return false
}

// Code is the error code of a refusal.
const Code = "origin_not_allowed"

// Message explains a refusal to the caller of the client manager.
const Message = refusal + defaultSetting + " to allow it"

const (
	refusal        = "cross-origin requests from web pages are not allowed; list the page's origin in "
	defaultSetting = "CLIENT_MANAGER_ALLOWED_ORIGINS"
)
