package api

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"net/http"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/home-console/client-manager/internal/fleet"
	"github.com/home-console/client-manager/internal/longlived"
	"github.com/home-console/client-manager/pkg/agentproto"
)

// Files moves files to and from agents (*sessions.Manager implements
// it). Its methods are safe for concurrent use; errors are coded (see
// docs/api.md, Files).
type Files interface {
	// Upload streams body (req.Size - req.Offset bytes) to the agent.
	Upload(ctx context.Context, req fleet.FileRequest, body io.Reader) (fleet.FileResult, error)
	// Download calls start with the file's info once the agent answered,
	// then copies the file from req.Offset to what start returned.
	Download(ctx context.Context, req fleet.FileRequest, start func(agentproto.FileInfo) io.Writer) (fleet.FileResult, error)
	// Stat describes a path; List lists a directory.
	Stat(ctx context.Context, agentID, path string) (agentproto.FileInfo, error)
	List(ctx context.Context, agentID, path string) (agentproto.FileListing, error)
}

// Headers of the file routes.
const (
	headerSHA256       = "X-Content-SHA256"
	headerUploadOffset = "Upload-Offset"
	headerFileSize     = "X-File-Size"
)

// filePath reads the required ?path= (absolute, on the agent). It writes
// the error response and returns false when it is missing or relative.
func (s *Server) filePath(c *gin.Context) (string, bool) {
	p := c.Query("path")
	if p == "" || !path.IsAbs(p) && !isWindowsAbs(p) || strings.ContainsRune(p, 0) {
		s.failf(c, codeInvalidQuery, "path is required and must be an absolute path on the agent")
		return "", false
	}
	return p, true
}

// isWindowsAbs reports whether p looks like C:\… or C:/….
func isWindowsAbs(p string) bool {
	return len(p) >= 3 && p[1] == ':' && (p[2] == '\\' || p[2] == '/')
}

// uploadRequest reads an upload's query and headers. It writes the
// error response and returns false when one is invalid.
func (s *Server) uploadRequest(c *gin.Context) (fleet.FileRequest, bool) {
	req := fleet.FileRequest{AgentID: c.Param("id")}
	var ok bool
	if req.Path, ok = s.filePath(c); !ok {
		return req, false
	}
	if v := c.Query("mode"); v != "" {
		m, err := strconv.ParseUint(v, 8, 32)
		if err != nil || m == 0 || m > 0o777 {
			s.failf(c, codeInvalidQuery, "mode must be octal permission bits from 1 to 0777, e.g. 0644")
			return req, false
		}
		req.Mode = uint32(m)
	}
	if c.GetHeader("Content-Length") == "" || c.Request.ContentLength < 0 {
		s.failf(c, fleet.CodeLengthRequired, "an upload needs a Content-Length (no chunked bodies)")
		return req, false
	}
	if v := c.GetHeader(headerSHA256); v != "" {
		if !isHexDigest(strings.ToLower(v)) {
			s.failf(c, codeInvalidHeader, "%s must be 64 hex digits", headerSHA256)
			return req, false
		}
		req.SHA256 = strings.ToLower(v)
	}
	return s.contentRange(c, req)
}

// contentRange reads Content-Range: bytes START-(TOTAL-1)/TOTAL (a
// resumed upload: the body runs from START to the end of the file) or
// bytes */TOTAL (a probe with an empty body); without it the upload is
// the whole file. Parts that stop before the end are refused: the
// agent commits a file when its stream ends cleanly.
func (s *Server) contentRange(c *gin.Context, req fleet.FileRequest) (fleet.FileRequest, bool) {
	n := c.Request.ContentLength
	v := c.GetHeader("Content-Range")
	if v == "" {
		req.Size = n
		return req, true
	}
	spec, ok := strings.CutPrefix(v, "bytes ")
	rng, total, ok2 := strings.Cut(spec, "/")
	size, err := strconv.ParseInt(total, 10, 64)
	if !ok || !ok2 || err != nil || size < 0 {
		s.failf(c, codeInvalidHeader, "Content-Range must be bytes START-END/TOTAL or bytes */TOTAL")
		return req, false
	}
	req.Size = size
	if rng == "*" && n == 0 {
		req.Offset = size
		return req, true
	}
	first, last, ok := strings.Cut(rng, "-")
	start, err1 := strconv.ParseInt(first, 10, 64)
	end, err2 := strconv.ParseInt(last, 10, 64)
	if !ok || err1 != nil || err2 != nil || start < 0 || end < start || end != size-1 || end-start+1 != n {
		s.failf(c, codeInvalidHeader, "Content-Range %q must run from the resume offset to the last byte (TOTAL-1) and match the body (%d bytes)", v, n)
		return req, false
	}
	req.Offset = start
	return req, true
}

// isHexDigest reports whether v is 64 lower-case hex digits.
func isHexDigest(v string) bool {
	if len(v) != 64 {
		return false
	}
	for _, r := range v {
		if !('0' <= r && r <= '9' || 'a' <= r && r <= 'f') {
			return false
		}
	}
	return true
}

// progressBody is a request body whose read deadline moves by timeout
// before each read: an upload may take as long as it needs while bytes
// arrive, and is cut when they stop for timeout.
type progressBody struct {
	io.Reader
	rc      *http.ResponseController
	timeout time.Duration
}

func (b *progressBody) Read(p []byte) (int, error) {
	_ = b.rc.SetReadDeadline(time.Now().Add(b.timeout))
	return b.Reader.Read(p)
}

// upload answers PUT /api/clients/{id}/files?path=&mode=.
func (s *Server) upload(c *gin.Context) {
	req, ok := s.uploadRequest(c)
	if !ok || !s.agentExists(c) {
		return
	}
	body := &progressBody{Reader: c.Request.Body, rc: http.NewResponseController(c.Writer), timeout: cmp.Or(s.BodyTimeout, defaultBodyTimeout)}
	res, err := s.Files.Upload(c.Request.Context(), req, body)
	_ = longlived.Extend(c.Writer, c.Request, 0)
	c.Set(auditDetailKey, fmt.Sprintf("upload %s offset %d size %d bytes %d sha256 %s", strconv.Quote(req.Path), req.Offset, req.Size, res.Bytes, cmp.Or(res.SHA256, "-")))
	if err != nil {
		s.fail(c, err)
		return
	}
	c.Header(headerSHA256, res.SHA256)
	c.JSON(http.StatusCreated, res)
}

// downloadOffset reads Range: bytes=N- (other forms are ignored, and
// the whole file is sent).
func downloadOffset(c *gin.Context) int64 {
	v, ok := strings.CutPrefix(c.GetHeader("Range"), "bytes=")
	first, ok2 := strings.CutSuffix(v, "-")
	n, err := strconv.ParseInt(first, 10, 64)
	if !ok || !ok2 || err != nil || n < 0 {
		return 0
	}
	return n
}

// download answers GET /api/clients/{id}/files?path=: the file, chunked,
// with its SHA-256 in the X-Content-SHA256 trailer; Range: bytes=N-
// answers 206 from N.
func (s *Server) download(c *gin.Context) {
	p, ok := s.filePath(c)
	if !ok || !s.agentExists(c) {
		return
	}
	req := fleet.FileRequest{AgentID: c.Param("id"), Path: p, Offset: downloadOffset(c)}
	w, _ := longlived.Stream(c.Writer, c.Request, 0)
	started := false
	res, err := s.Files.Download(c.Request.Context(), req, func(info agentproto.FileInfo) io.Writer {
		started = true
		startDownload(w, req.Offset, info)
		return w
	})
	c.Set(auditDetailKey, fmt.Sprintf("download %s offset %d bytes %d sha256 %s", strconv.Quote(p), req.Offset, res.Bytes, cmp.Or(res.SHA256, "-")))
	switch {
	case err != nil && !started:
		s.fail(c, err)
	case err != nil:
		c.Set(auditDetailKey, c.GetString(auditDetailKey)+" interrupted: "+string(codeOf(err)))
		cut(c)
	default:
		w.Header().Set(headerSHA256, res.SHA256)
	}
}

// startDownload writes a download's header.
func startDownload(w http.ResponseWriter, offset int64, info agentproto.FileInfo) {
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", cmp.Or(info.Name, "file")))
	h.Set("Accept-Ranges", "bytes")
	h.Set("Trailer", headerSHA256)
	h.Set(headerFileSize, strconv.FormatInt(info.Size, 10))
	if offset > 0 {
		h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", offset, info.Size-1, info.Size))
		w.WriteHeader(http.StatusPartialContent)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// cut ends a response that broke off midway so the client sees it
// incomplete (no last chunk), not as a shorter file: it flushes what was
// copied, then hijacks the
// connection beneath gin's writer (which refuses once the body started)
// and closes it. Over HTTP/2, which cannot be hijacked, the response ends
// without the digest trailer, which tells the client as much.
func cut(c *gin.Context) {
	_ = http.NewResponseController(c.Writer).Flush() // what was sent counts for a resume
	var w http.ResponseWriter = c.Writer
	if u, ok := w.(interface{ Unwrap() http.ResponseWriter }); ok {
		w = u.Unwrap()
	}
	if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
		_ = conn.Close()
	}
}

// statFile answers GET /api/clients/{id}/files/stat?path=.
func (s *Server) statFile(c *gin.Context) {
	p, ok := s.filePath(c)
	if !ok || !s.agentExists(c) {
		return
	}
	c.Set(auditDetailKey, "stat "+strconv.Quote(p))
	info, err := s.Files.Stat(c.Request.Context(), c.Param("id"), p)
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, info)
}

// listFiles answers GET /api/clients/{id}/files/list?path=.
func (s *Server) listFiles(c *gin.Context) {
	p, ok := s.filePath(c)
	if !ok || !s.agentExists(c) {
		return
	}
	c.Set(auditDetailKey, "list "+strconv.Quote(p))
	l, err := s.Files.List(c.Request.Context(), c.Param("id"), p)
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, l)
}
