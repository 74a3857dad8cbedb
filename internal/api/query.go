package api

import (
	"net/url"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/gin-gonic/gin"

	"github.com/home-console/client-manager/internal/events"
	"github.com/home-console/client-manager/internal/fleet"
)

// queryParams lists the query parameters each route takes, by method and
// route pattern; a route not listed takes none. Every other parameter is
// refused with 400 invalid_query (docs/api.md says so), so that a typo
// (?stauts=failed) is not silently a different request.
var queryParams = map[string][]string{
	"GET /api/clients":        {"status", "label", "q", "include_revoked", "limit", "offset"},
	"DELETE /api/clients/:id": {"revoke"},
	"POST /api/commands/:id":  {"wait"},
	"POST /api/commands":      {"wait"},
	"GET /api/commands":       {"client_id", "status", "batch_id", "requested_by", "since", "limit", "offset"},
	"GET /api/audit":          {"actor", "action", "target", "since", "limit", "offset"},
	"GET /api/events":         {"types"},

	"GET /api/clients/:id/terminal":   {"cols", "rows", "term", "ticket"},
	"GET /api/sessions/:id/watch":     {"ticket"},
	"GET /api/sessions":               {"agent_id", "limit"},
	"PUT /api/clients/:id/files":      {"path", "mode"},
	"GET /api/clients/:id/files":      {"path"},
	"GET /api/clients/:id/files/stat": {"path"},
	"GET /api/clients/:id/files/list": {"path"},
}

// repeatableParam is the one query parameter that may be given more than
// once (GET /api/clients?label=a=1&label=b=2).
const repeatableParam = "label"

// checkQuery refuses, with 400 invalid_query, a query string that is not
// valid, names a parameter the route does not take, gives a parameter
// other than label twice, or holds invalid UTF-8.
func (s *Server) checkQuery(c *gin.Context) {
	raw := c.Request.URL.RawQuery
	if raw == "" {
		return
	}
	q, err := url.ParseQuery(raw)
	if err != nil {
		s.failf(c, codeInvalidQuery, "query string is not valid: %v", err)
		c.Abort()
		return
	}
	route := c.Request.Method + " " + c.FullPath()
	allowed := queryParams[route]
	for name, values := range q {
		if msg := checkParam(route, allowed, name, values); msg != "" {
			s.failf(c, codeInvalidQuery, "%s", msg)
			c.Abort()
			return
		}
	}
}

// checkParam says what is wrong with one query parameter of route, or "".
func checkParam(route string, allowed []string, name string, values []string) string {
	switch {
	case !utf8.ValidString(name) || slices.ContainsFunc(values, func(v string) bool { return !utf8.ValidString(v) }):
		return "query parameter " + quoteParam(name) + " is not valid UTF-8"
	case !slices.Contains(allowed, name) && len(allowed) == 0:
		return "unknown query parameter " + quoteParam(name) + "; " + route + " takes none"
	case !slices.Contains(allowed, name):
		return "unknown query parameter " + quoteParam(name) + "; " + route + " takes " + strings.Join(allowed, ", ")
	case len(values) > 1 && name != repeatableParam:
		return "query parameter " + name + " is given more than once"
	}
	return ""
}

// maxParamShown bounds how much of a query parameter a message repeats.
const maxParamShown = 64

// quoteParam quotes a query parameter's name or value for a message (Go
// syntax, so invalid UTF-8 shows as \x escapes), cut to maxParamShown
// bytes.
func quoteParam(s string) string {
	if len(s) > maxParamShown {
		return strconv.Quote(s[:maxParamShown]) + "…"
	}
	return strconv.Quote(s)
}

// boolParam reads an optional boolean query parameter: absent or empty
// is false, otherwise it must be "true" or "false". It writes the error
// response and returns false when it is anything else.
func (s *Server) boolParam(c *gin.Context, name string) (value, ok bool) {
	switch c.Query(name) {
	case "", "false":
		return false, true
	case "true":
		return true, true
	}
	s.failf(c, codeInvalidQuery, "%s must be true or false", name)
	return false, false
}

// commandStatuses reads GET /api/commands?status=a,b: every status must be
// one of fleet.CommandStatuses. It writes the error response and returns
// false when one is not.
func (s *Server) commandStatuses(c *gin.Context) ([]fleet.CommandStatus, bool) {
	v := c.Query("status")
	if v == "" {
		return nil, true
	}
	all := fleet.CommandStatuses()
	var out []fleet.CommandStatus
	for _, st := range strings.Split(v, ",") {
		if !slices.Contains(all, fleet.CommandStatus(st)) {
			s.failf(c, codeInvalidQuery, "status %s is not a command status; use %s (comma-separated)", quoteParam(st), joinNames(all))
			return nil, false
		}
		out = append(out, fleet.CommandStatus(st))
	}
	return out, true
}

// eventTypes reads GET /api/events?types=p1,p2: every entry must be a
// non-empty prefix of at least one event type (events.Types). It writes
// the error response and returns false when one is not.
func (s *Server) eventTypes(c *gin.Context) ([]string, bool) {
	v := c.Query("types")
	if v == "" {
		return nil, true
	}
	prefixes := strings.Split(v, ",")
	all := events.Types()
	for _, p := range prefixes {
		if p == "" || !slices.ContainsFunc(all, func(t events.Type) bool { return strings.HasPrefix(string(t), p) }) {
			s.failf(c, codeInvalidQuery, "types entry %s is not a prefix of any event type; the types are %s", quoteParam(p), joinNames(all))
			return nil, false
		}
	}
	return prefixes, true
}

// joinNames lists enum values for a message.
func joinNames[T ~string](values []T) string {
	names := make([]string, len(values))
	for i, v := range values {
		names[i] = string(v)
	}
	return strings.Join(names, ", ")
}
