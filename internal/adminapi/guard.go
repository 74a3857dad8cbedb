package adminapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/home-console/client-manager/internal/httpjson"
)

// Bounds of a state-changing request's body.
const (
	// MaxBodyBytes bounds the body of a state-changing request.
	MaxBodyBytes = 64 << 10
	// DefaultBodyTimeout is how long the body may take to arrive when
	// Config.BodyTimeout is not set.
	DefaultBodyTimeout = 10 * time.Second
)

// Error codes of the refusals of state-changing requests.
const (
	codeUnsupportedMediaType = "unsupported_media_type"
	codeIncompleteBody       = "incomplete_body"
	codeBodyTooLarge         = "body_too_large"
	codeRequestTimeout       = "request_timeout"
	codeInvalidJSON          = "invalid_json"
)

// guards returns the checks every state-changing request passes before
// it acts, in order: the browser origin rule (403), a content type or
// credential no simple cross-site request can carry (415), and the whole
// body read and checked (413, 400, 408).
func (s *server) guards() gin.HandlersChain {
	return gin.HandlersChain{s.checkOrigin, requireNonSimple, s.readBody}
}

// checkOrigin answers 403 origin_not_allowed to a web page of another
// origin than cfg.Origins allows.
func (s *server) checkOrigin(c *gin.Context) {
	if !s.cfg.Origins.Check(c.Writer, c.Request) {
		c.Abort()
	}
}

// requireNonSimple answers 415 unless the request carries
// "Content-Type: application/json" or a bearer token: a browser sends
// neither cross-site without a CORS preflight, which this API never
// grants, so a web page cannot make an operator's browser act.
func requireNonSimple(c *gin.Context) {
	if _, ok := httpjson.BearerToken(c.Request.Header); ok {
		return
	}
	if mt, _, err := mime.ParseMediaType(c.GetHeader("Content-Type")); err == nil && mt == "application/json" {
		return
	}
	httpjson.Error(c, http.StatusUnsupportedMediaType, codeUnsupportedMediaType,
		"a state-changing request needs Content-Type: application/json (or Authorization: Bearer <token>); "+
			"got "+strconv.Quote(c.GetHeader("Content-Type")))
}

// readBody reads the whole body, within MaxBodyBytes and the body
// timeout, before the action runs: a request whose body never completes
// does nothing. The body must be empty or {} (the actions take no
// parameters).
func (s *server) readBody(c *gin.Context) {
	timeout := s.cfg.BodyTimeout
	if timeout <= 0 {
		timeout = DefaultBodyTimeout
	}
	rc := http.NewResponseController(c.Writer)
	_ = rc.SetReadDeadline(time.Now().Add(timeout))
	body, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, MaxBodyBytes))
	_ = rc.SetReadDeadline(time.Time{})
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		httpjson.Error(c, http.StatusRequestEntityTooLarge, codeBodyTooLarge,
			"request body exceeds "+strconv.FormatInt(tooBig.Limit, 10)+" bytes")
	case errors.Is(err, os.ErrDeadlineExceeded):
		c.Header("Connection", "close")
		httpjson.Error(c, http.StatusRequestTimeout, codeRequestTimeout, "request body not received within "+timeout.String())
	case err != nil:
		c.Header("Connection", "close")
		httpjson.Error(c, http.StatusBadRequest, codeIncompleteBody, "request body ended early: "+err.Error()+"; nothing was done")
	case !emptyObject(body):
		httpjson.Error(c, http.StatusBadRequest, codeInvalidJSON, "the body must be empty or {}: admin actions take no parameters")
	}
}

// emptyObject reports whether body is empty or a JSON object without
// members.
func emptyObject(body []byte) bool {
	if len(bytes.TrimSpace(body)) == 0 {
		return true
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var v struct{}
	if dec.Decode(&v) != nil || !bytes.HasPrefix(bytes.TrimSpace(body), []byte("{")) {
		return false
	}
	_, err := dec.Token()
	return errors.Is(err, io.EOF)
}
