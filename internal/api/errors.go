package api

import (
	"context"
	"errors"
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"

	"github.com/home-console/client-manager/internal/fleet"
	"github.com/home-console/client-manager/internal/httpjson"
)

// Error codes of the API's own refusals; the domain's codes are fleet's.
const (
	codeInvalidJSON         fleet.ErrorCode = "invalid_json"
	codeBodyTooLarge        fleet.ErrorCode = "body_too_large"
	codeRequestTimeout      fleet.ErrorCode = "request_timeout"
	codeInvalidQuery        fleet.ErrorCode = "invalid_query"
	codeInvalidSelector     fleet.ErrorCode = "invalid_selector"
	codeSelectorTooLarge    fleet.ErrorCode = "selector_too_large"
	codeTooManyTargets      fleet.ErrorCode = "too_many_targets"
	codeLabelsNotMatched    fleet.ErrorCode = "labels_not_matched"
	codeCommandNotAllowed   fleet.ErrorCode = "command_not_allowed"
	codeInvalidTokenRequest fleet.ErrorCode = "invalid_token_request"
	codeRateLimited         fleet.ErrorCode = "rate_limited"
	codeInvalidHeader       fleet.ErrorCode = "invalid_header"
)

// statusOf is the one table from error code to HTTP status: every error
// the API answers with has its code here (docs/api.md lists them, and a
// test checks it does). A code missing from it is answered 500 internal.
var statusOf = map[fleet.ErrorCode]int{
	codeInvalidJSON:          http.StatusBadRequest,
	codeInvalidQuery:         http.StatusBadRequest,
	codeInvalidSelector:      http.StatusBadRequest,
	codeSelectorTooLarge:     http.StatusBadRequest,
	codeInvalidTokenRequest:  http.StatusBadRequest,
	fleet.CodeInvalidCommand: http.StatusBadRequest,
	fleet.CodeUnauthorized:   http.StatusUnauthorized,
	fleet.CodeForbidden:      http.StatusForbidden,
	codeCommandNotAllowed:    http.StatusForbidden,
	fleet.CodeNotFound:       http.StatusNotFound,
	fleet.CodeUnknownAgent:   http.StatusNotFound,
	codeRequestTimeout:       http.StatusRequestTimeout,
	fleet.CodeConflict:       http.StatusConflict,
	fleet.CodeAlreadyFinal:   http.StatusConflict,
	fleet.CodeAgentRevoked:   http.StatusConflict,
	fleet.CodeAgentOffline:   http.StatusConflict,
	codeLabelsNotMatched:     http.StatusConflict,
	codeBodyTooLarge:         http.StatusRequestEntityTooLarge,
	codeTooManyTargets:       http.StatusRequestEntityTooLarge,
	codeRateLimited:          http.StatusTooManyRequests,
	fleet.CodeInternal:       http.StatusInternalServerError,
	fleet.CodeUnavailable:    http.StatusServiceUnavailable,

	fleet.CodeStorageUnavailable: http.StatusServiceUnavailable,

	codeInvalidHeader:             http.StatusBadRequest,
	fleet.CodeInvalidSubprotocol:  http.StatusBadRequest,
	fleet.CodePathInvalid:         http.StatusBadRequest,
	fleet.CodeTransferBadRequest:  http.StatusBadRequest,
	fleet.CodeTicketInvalid:       http.StatusUnauthorized,
	fleet.CodePathOutsideRoots:    http.StatusForbidden,
	fleet.CodeFilePermission:      http.StatusForbidden,
	fleet.CodeFileNotFound:        http.StatusNotFound,
	fleet.CodeTerminalNotAllowed:  http.StatusConflict,
	fleet.CodeFilesNotAllowed:     http.StatusConflict,
	fleet.CodeSessionEnded:        http.StatusConflict,
	fleet.CodeOffsetMismatch:      http.StatusConflict,
	fleet.CodePathIsDirectory:     http.StatusConflict,
	fleet.CodePathNotDirectory:    http.StatusConflict,
	fleet.CodeFileNotRegular:      http.StatusConflict,
	fleet.CodeFileHardLink:        http.StatusConflict,
	fleet.CodeFileBusy:            http.StatusConflict,
	fleet.CodeFileChanged:         http.StatusConflict,
	fleet.CodeSizeMismatch:        http.StatusConflict,
	fleet.CodeLengthRequired:      http.StatusLengthRequired,
	fleet.CodeTransferTooLarge:    http.StatusRequestEntityTooLarge,
	fleet.CodeRangeNotSatisfiable: http.StatusRequestedRangeNotSatisfiable,
	fleet.CodeDigestMismatch:      http.StatusUnprocessableEntity,
	fleet.CodeTerminalLimit:       http.StatusTooManyRequests,
	fleet.CodeTransferLimit:       http.StatusTooManyRequests,
	fleet.CodeFileIOError:         http.StatusBadGateway,
	fleet.CodeAgentError:          http.StatusBadGateway,
	fleet.CodeAgentDisconnected:   http.StatusBadGateway,
}

// storageRetryAfter is the Retry-After, in seconds, of a 503
// storage_unavailable answer.
const storageRetryAfter = "5"

// codeOf is fleet.CodeOf, with a cancelled or timed-out request as
// fleet.CodeUnavailable and a code the table lacks as fleet.CodeInternal.
func codeOf(err error) fleet.ErrorCode {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return fleet.CodeUnavailable
	}
	code := fleet.CodeOf(err)
	if _, ok := statusOf[code]; !ok {
		return fleet.CodeInternal
	}
	return code
}

// detail is the code and message the API shows for err: err's own text
// for a coded error (callers make it presentable), the store's reason
// (fleet.MessageOf) for a store that refuses writes, fixed texts for a
// cancelled request and for an internal error, whose cause is only
// logged.
func detail(err error) httpjson.ErrorDetail {
	code, msg := codeOf(err), err.Error()
	switch {
	case code == fleet.CodeInternal:
		msg = "internal error"
	case code == fleet.CodeStorageUnavailable:
		msg = fleet.MessageOf(err)
	case fleet.CodeOf(err) == fleet.CodeInternal: // a context error
		msg = "request cancelled or timed out"
	}
	return httpjson.ErrorDetail{Code: string(code), Message: msg}
}

// fail aborts the request with err's status (from statusOf), code and
// message. An internal error is logged with its cause first.
func (s *Server) fail(c *gin.Context, err error) {
	d := detail(err)
	switch fleet.ErrorCode(d.Code) {
	case fleet.CodeInternal:
		s.Log.Error("api request failed", "route", c.FullPath(), "err", err)
	case fleet.CodeStorageUnavailable:
		s.Log.Warn("api request refused: the store refuses writes", "route", c.FullPath(), "err", err)
		c.Header("Retry-After", storageRetryAfter)
	}
	c.AbortWithStatusJSON(statusOf[fleet.ErrorCode(d.Code)], gin.H{"error": transferDetail(c, err, d)})
}

// errorDetail is an error's code and message, with the fields of a
// transfer's errors.
type errorDetail struct {
	httpjson.ErrorDetail
	// Offset is where an upload must continue (offset_mismatch).
	Offset *int64 `json:"offset,omitempty"`
	// SHA256 is the content's actual digest (digest_mismatch).
	SHA256 string `json:"sha256,omitempty"`
}

// transferDetail adds the fields and headers of a transfer's errors: an
// offset mismatch's Upload-Offset, a range's Content-Range, a digest
// mismatch's actual digest.
func transferDetail(c *gin.Context, err error, d httpjson.ErrorDetail) errorDetail {
	out := errorDetail{ErrorDetail: d}
	var off *fleet.OffsetMismatchError
	var rng *fleet.RangeNotSatisfiableError
	var dig *fleet.DigestMismatchError
	switch {
	case errors.As(err, &off):
		c.Header(headerUploadOffset, strconv.FormatInt(off.Offset, 10))
		out.Offset = &off.Offset
	case errors.As(err, &rng):
		c.Header("Content-Range", "bytes */"+strconv.FormatInt(rng.Size, 10))
	case errors.As(err, &dig):
		out.SHA256 = dig.Actual
	}
	return out
}

// failf is fail with a new error of code and message.
func (s *Server) failf(c *gin.Context, code fleet.ErrorCode, format string, args ...any) {
	s.fail(c, fleet.Errorf(code, format, args...))
}

// storeMessages phrase the store's coded errors about a "what" (a kind
// of thing, and the route's id if it has one).
var storeMessages = map[fleet.ErrorCode]string{
	fleet.CodeNotFound:     "%s not found",
	fleet.CodeAlreadyFinal: "%s already reached a terminal state",
	fleet.CodeConflict:     "%s already exists",
}

// storeError answers for an error from the store or a service about
// what: its coded errors get a message naming what (and the route's id),
// everything else goes to fail as it is.
func (s *Server) storeError(c *gin.Context, what string, err error) {
	if format, ok := storeMessages[fleet.CodeOf(err)]; ok && codeOf(err) != fleet.CodeUnavailable {
		if id := c.Param("id"); id != "" {
			what += " " + strconv.Quote(id)
		}
		err = fleet.Errorf(fleet.CodeOf(err), format, what)
	}
	s.fail(c, err)
}
