package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// ServerError is an HTTP error answer of the server, to an enrollment or to
// the WebSocket upgrade. Code and Message come from the server's JSON body
// {"error":{"code","message"}} when it has one. A ServerError with status
// 401 matches [ErrUnauthorized] under errors.Is, and also [ErrRevoked] if
// its code is "revoked".
type ServerError struct {
	StatusCode int
	Code       string
	Message    string
	// RetryAfter is the server's Retry-After hint (429, 503), or zero.
	RetryAfter time.Duration
}

func (e *ServerError) Error() string {
	s := fmt.Sprintf("server answered %d %s", e.StatusCode, http.StatusText(e.StatusCode))
	if e.Code != "" {
		s += ": " + e.Code
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// Is makes a 401 answer match ErrUnauthorized, and ErrRevoked when the
// server says the credential was revoked.
func (e *ServerError) Is(target error) bool {
	if e.StatusCode != http.StatusUnauthorized {
		return false
	}
	return target == ErrUnauthorized || target == ErrRevoked && e.Code == "revoked"
}

// serverErrorFrom builds a ServerError from a non-success response, reading
// at most 64 KiB of its body.
func serverErrorFrom(resp *http.Response) *ServerError {
	e := &ServerError{StatusCode: resp.StatusCode, RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After"))}
	if resp.Body == nil {
		return e
	}
	var body struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&body) == nil {
		e.Code, e.Message = body.Error.Code, body.Error.Message
	}
	return e
}

// parseRetryAfter reads a Retry-After value: delay seconds or an HTTP date.
func parseRetryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if secs, err := strconv.Atoi(v); err == nil {
		return time.Duration(max(secs, 0)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0)
	}
	return 0
}

// errBadServerURL is wrapped by the errors of endpointURL.
var errBadServerURL = errors.New("bad server URL")

// endpointURL joins the server's base URL and an endpoint path. The base may
// use http, https, ws or wss; the result uses http or https (the WebSocket
// dialer accepts them as ws and wss).
func endpointURL(base, path string) (string, error) {
	u, err := url.Parse(base)
	if err != nil {
		return "", fmt.Errorf("%w %q: %w", errBadServerURL, base, err)
	}
	switch u.Scheme {
	case "http", "https":
	case "ws":
		u.Scheme = "http"
	case "wss":
		u.Scheme = "https"
	default:
		return "", fmt.Errorf("%w %q: scheme must be http, https, ws or wss", errBadServerURL, base)
	}
	if u.Host == "" {
		return "", fmt.Errorf("%w %q: no host", errBadServerURL, base)
	}
	u.RawQuery, u.Fragment = "", ""
	return u.JoinPath(path).String(), nil
}
