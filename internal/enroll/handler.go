package enroll

import (
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"

	"github.com/home-console/client-manager/internal/fleet"
	"github.com/home-console/client-manager/internal/httpjson"
	"github.com/home-console/client-manager/internal/ratelimit"
	"github.com/home-console/client-manager/internal/strictjson"
	"github.com/home-console/client-manager/pkg/agentproto"
)

// MaxEnrollBody is the largest enrollment request body accepted.
const MaxEnrollBody = 64 << 10

// Handler serves POST agentproto.PathEnroll: an agentproto.EnrollRequest
// in (strict JSON, strictjson.Decode: unknown, repeated or wrongly cased
// fields, invalid UTF-8 and trailing data are rejected), 201 and
// an agentproto.EnrollResponse out. Errors are JSON
// {"error":{"code","message"}}: 400 invalid_json / invalid_request, 401
// invalid_token, 403 origin_not_allowed (a browser page of another origin
// than Options.Origins allows: the rule of the operator API,
// origin.Policy.Check), 405 method_not_allowed, 413 body_too_large, 429
// rate_limited (with Retry-After; attempts are limited per remote IP, taken
// from the connection, not from forwarding headers), 500 internal, 503
// storage_unavailable (with Retry-After: the store refuses writes; nothing
// was written and the token keeps its use).
func (s *Service) Handler() http.Handler {
	return http.HandlerFunc(s.serveEnroll)
}

func (s *Service) serveEnroll(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		httpjson.Write(w, http.StatusMethodNotAllowed, "method_not_allowed", r.Method+" is not allowed on "+agentproto.PathEnroll)
		return
	}
	if !s.opts.Origins.Check(w, r) {
		return
	}
	if wait, ok := s.limiter.Allow(remoteIP(r), s.opts.Now()); !ok {
		w.Header().Set("Retry-After", strconv.Itoa(ratelimit.RetryAfter(wait)))
		httpjson.Write(w, http.StatusTooManyRequests, "rate_limited", "too many enrollment attempts from this address; retry later")
		return
	}
	var req agentproto.EnrollRequest
	if status, code, msg := decodeStrict(w, r, &req); status != 0 {
		httpjson.Write(w, status, code, msg)
		return
	}
	resp, err := s.Enroll(r.Context(), req, r.RemoteAddr)
	switch {
	case errors.Is(err, ErrInvalidRequest):
		httpjson.Write(w, http.StatusBadRequest, "invalid_request", err.Error())
	case errors.Is(err, fleet.ErrTokenInvalid):
		httpjson.Write(w, http.StatusUnauthorized, "invalid_token", "enrollment token is invalid, expired or used up")
	case errors.Is(err, fleet.ErrStorageUnavailable):
		s.log.Error("enrollment not stored", "remote_addr", r.RemoteAddr, "err", err)
		w.Header().Set("Retry-After", "5")
		httpjson.Write(w, http.StatusServiceUnavailable, string(fleet.CodeStorageUnavailable),
			"enrollment not stored, the token was not spent: "+fleet.MessageOf(err))
	case err != nil:
		s.log.Error("enrollment failed", "remote_addr", r.RemoteAddr, "err", err)
		httpjson.Write(w, http.StatusInternalServerError, "internal", "enrollment failed")
	default:
		w.Header().Set("Cache-Control", "no-store")
		writeJSON(w, enrolledStatus, resp)
	}
}

// decodeStrict decodes one JSON object from the body into v with
// strictjson.Decode. On failure it returns the HTTP status, error code
// and message to answer with.
func decodeStrict(w http.ResponseWriter, r *http.Request, v any) (int, string, string) {
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxEnrollBody))
	if err == nil {
		err = strictjson.Decode(data, v)
	}
	var tooBig *http.MaxBytesError
	switch {
	case err == nil:
		return 0, "", ""
	case errors.As(err, &tooBig):
		return http.StatusRequestEntityTooLarge, "body_too_large", "request body exceeds " + strconv.Itoa(MaxEnrollBody) + " bytes"
	case errors.Is(err, strictjson.ErrEmpty):
		return http.StatusBadRequest, "invalid_json", "request body is empty"
	default:
		return http.StatusBadRequest, "invalid_json", "invalid JSON body: " + err.Error()
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// enrolledStatus answers a successful enrollment; its audit entry
// records it as the result.
const enrolledStatus = http.StatusCreated

func remoteIP(r *http.Request) string { return hostOf(r.RemoteAddr) }

// hostOf returns the host of a "host:port" address (the address as it is
// if it has no port).
func hostOf(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return host
}
