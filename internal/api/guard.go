package api

import (
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/home-console/client-manager/internal/access"
	"github.com/home-console/client-manager/internal/ratelimit"
)

// authenticate identifies the caller (access.Identify) and applies the
// per-caller rate limit: an authenticated caller spends from the bucket of
// its principal, so callers sharing an address do not starve each other;
// a request that fails authentication spends from the bucket of its
// address, so guessing tokens is limited too. An empty bucket answers 429
// rate_limited with Retry-After.
func (s *Server) authenticate(c *gin.Context) {
	now := time.Now()
	p, err := access.Identify(c.Request, s.Tokens)
	key := "principal:" + p.Name
	if err != nil {
		key = "ip:" + access.PeerIP(c.Request)
	}
	if wait, ok := s.Limiter.Allow(key, now); !ok {
		c.Header("Retry-After", strconv.Itoa(ratelimit.RetryAfter(wait)))
		s.failf(c, codeRateLimited, "too many requests from this caller; retry later")
		return
	}
	if err != nil {
		s.fail(c, err)
		return
	}
	access.Set(c, p)
}

// require returns middleware that answers 403 forbidden unless the
// caller, identified by authenticate before it, has at least role min.
func (s *Server) require(min access.Role) gin.HandlerFunc {
	return func(c *gin.Context) {
		p, _ := access.From(c)
		if err := p.Need(min); err != nil {
			s.fail(c, err)
		}
	}
}

// checkOrigin answers 403 origin_not_allowed to a web page of another
// origin than s.Origins allows (origin.Policy.Check, which POST
// /api/enroll applies too). Without it, a page the
// operator visits could post to the API from the operator's browser: on
// the server host with no token configured, as the loopback admin.
func (s *Server) checkOrigin(c *gin.Context) {
	if !s.Origins.Check(c.Writer, c.Request) {
		c.Abort()
	}
}
