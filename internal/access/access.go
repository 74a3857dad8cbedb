// Package access decides who may call the operator API: it authenticates a
// request (bearer token, or the loopback exemption when no token exists) and
// checks the caller's role.
package access

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"

	"github.com/gin-gonic/gin"

	"github.com/home-console/client-manager/internal/fleet"
	"github.com/home-console/client-manager/internal/httpjson"
	"github.com/home-console/client-manager/internal/origin"
)

// Role is what an operator may do. Roles are ordered: each includes the
// ones before it.
type Role int

// Roles.
const (
	// RoleViewer reads.
	RoleViewer Role = iota + 1
	// RoleOperator also runs and cancels commands.
	RoleOperator
	// RoleAdmin also manages enrollment tokens, agents and operator tokens.
	RoleAdmin
)

// String returns the role's name.
func (r Role) String() string {
	switch r {
	case RoleViewer:
		return "viewer"
	case RoleOperator:
		return "operator"
	case RoleAdmin:
		return "admin"
	}
	return fmt.Sprintf("role(%d)", int(r))
}

// ParseRole parses "viewer", "operator" or "admin".
func ParseRole(s string) (Role, error) {
	for _, r := range []Role{RoleViewer, RoleOperator, RoleAdmin} {
		if r.String() == s {
			return r, nil
		}
	}
	return 0, fmt.Errorf("unknown role %q: want viewer, operator or admin", s)
}

// Principal is an authenticated caller.
type Principal struct {
	// Name identifies the caller in the audit log: a token's name, or
	// "loopback".
	Name string
	Role Role
	// Source is the caller's IP address, without a port.
	Source string
}

// ErrInvalidToken means a bearer token is unknown, expired or revoked.
var ErrInvalidToken = errors.New("invalid, expired or revoked token")

// Tokens authenticates operator bearer tokens.
type Tokens interface {
	// Authenticate returns the principal for token or ErrInvalidToken.
	Authenticate(ctx context.Context, token string) (Principal, error)
	// Configured reports whether any operator token exists; while none
	// does, loopback callers are served without one.
	Configured(ctx context.Context) (bool, error)
}

const principalKey = "access.principal"

// Identify authenticates r. A request carrying a token is always checked
// against it. Without one, and while no token is configured, a caller is
// served as an admin named "loopback" if both its peer address and the
// Host it addressed are loopback (the latter defeats DNS rebinding: a web
// page cannot make a browser send "Host: localhost" to the client
// manager); everyone else gets an error saying how to configure a token.
// Errors are *fleet.Error: fleet.CodeUnauthorized, or
// fleet.CodeUnavailable when the tokens cannot be checked.
func Identify(r *http.Request, tokens Tokens) (Principal, error) {
	source := PeerIP(r)
	if r.Header.Get("Authorization") != "" {
		token, ok := httpjson.BearerToken(r.Header)
		if !ok {
			return Principal{}, fleet.Errorf(fleet.CodeUnauthorized, "Authorization must be: Bearer <token>")
		}
		p, err := tokens.Authenticate(r.Context(), token)
		switch {
		case errors.Is(err, ErrInvalidToken):
			return Principal{}, fleet.Errorf(fleet.CodeUnauthorized, "bearer token is invalid, expired or revoked")
		case err != nil:
			return Principal{}, fleet.Errorf(fleet.CodeUnavailable, "cannot check operator tokens")
		}
		p.Source = source
		return p, nil
	}
	configured, err := tokens.Configured(r.Context())
	if err != nil {
		return Principal{}, fleet.Errorf(fleet.CodeUnavailable, "cannot check operator tokens")
	}
	if !configured && isLoopback(source) && origin.LoopbackHost(r.Host) {
		return Principal{Name: "loopback", Role: RoleAdmin, Source: source}, nil
	}
	msg := "missing bearer token: send Authorization: Bearer <token>"
	if !configured {
		msg = "no operator token is configured, so only loopback callers addressing localhost are served; " +
			"create one on the server host (POST /api/tokens from localhost) and send Authorization: Bearer <token>"
	}
	return Principal{}, fleet.Errorf(fleet.CodeUnauthorized, "%s", msg)
}

// Need returns nil if p has at least role min, and an error with
// fleet.CodeForbidden otherwise.
func (p Principal) Need(min Role) error {
	if p.Role < min {
		return fleet.Errorf(fleet.CodeForbidden, "this action needs the %s role", min)
	}
	return nil
}

// Set records p as the request's principal.
func Set(c *gin.Context, p Principal) { c.Set(principalKey, p) }

// From returns the request's principal, recorded by Set.
func From(c *gin.Context) (Principal, bool) {
	v, ok := c.Get(principalKey)
	if !ok {
		return Principal{}, false
	}
	p, ok := v.(Principal)
	return p, ok
}

// PeerIP returns the IP of the TCP peer. Forwarding headers are never
// trusted here.
func PeerIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func isLoopback(ip string) bool {
	parsed := net.ParseIP(ip)
	return parsed != nil && parsed.IsLoopback()
}

// DefaultOperatorCommands are the executables an operator may run by
// default: tools that only read the machine's state.
var DefaultOperatorCommands = []string{
	"uname", "uptime", "hostname", "whoami", "id", "date", "df", "free", "ps", "ls", "ip", "ss", "systemctl",
}

// CommandPolicy says which roles may run which commands on the server
// side. The agent's own allow-list still has the final word.
type CommandPolicy struct {
	// Operator lists the executables an operator may run. Admins may run
	// anything their agents allow; viewers run nothing.
	Operator []string
}

// Allows reports whether role may run command.
func (p CommandPolicy) Allows(role Role, command string) bool {
	switch {
	case role >= RoleAdmin:
		return true
	case role == RoleOperator:
		return slices.Contains(p.Operator, command)
	}
	return false
}
