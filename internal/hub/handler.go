package hub

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/coder/websocket"

	"github.com/home-console/client-manager/internal/fleet"
	"github.com/home-console/client-manager/internal/httpjson"
	"github.com/home-console/client-manager/internal/origin"
	"github.com/home-console/client-manager/internal/ratelimit"
	"github.com/home-console/client-manager/pkg/agentproto"
)

// Handler serves GET agentproto.PathWebSocket. Every check runs before the
// upgrade and fails with a JSON error {"error":{"code","message"}}:
//
//   - 503 shutting_down while draining, 503 too_many_connections over
//     MaxConnections (both with Retry-After);
//   - 429 rate_limited over ConnectRate (with Retry-After);
//   - 405 method_not_allowed, 426 upgrade_required for a non-WebSocket
//     request;
//   - 403 origin_not_allowed for a browser page of another origin than
//     Config.Origins allows (agents send no Origin header);
//   - 400 subprotocol_required unless the client offers
//     agentproto.Subprotocol in Sec-WebSocket-Protocol;
//   - 401 unauthorized (missing, malformed or wrong "Authorization:
//     Bearer <credential>") or 401 revoked.
func (h *Hub) Handler() http.Handler {
	return http.HandlerFunc(h.serveWS)
}

func (h *Hub) serveWS(w http.ResponseWriter, r *http.Request) {
	if h.isDraining() {
		// Draining is a stop or a restart: agents should come back soon.
		w.Header().Set("Retry-After", "1")
		httpjson.Write(w, http.StatusServiceUnavailable, "shutting_down", "server shutting down; reconnect later")
		return
	}
	if wait, ok := h.connect.Allow(time.Now()); !ok {
		w.Header().Set("Retry-After", strconv.Itoa(ratelimit.RetryAfter(wait)))
		httpjson.Write(w, http.StatusTooManyRequests, "rate_limited", "too many connection attempts; retry later")
		return
	}
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		httpjson.Write(w, http.StatusMethodNotAllowed, "method_not_allowed", r.Method+" is not allowed on "+agentproto.PathWebSocket)
		return
	}
	if !headerHasToken(r.Header, "Connection", "upgrade") || !headerHasToken(r.Header, "Upgrade", "websocket") {
		w.Header().Set("Upgrade", "websocket")
		httpjson.Write(w, http.StatusUpgradeRequired, "upgrade_required", "this endpoint only accepts WebSocket upgrades")
		return
	}
	if !h.cfg.Origins.Allowed(r) {
		httpjson.Write(w, http.StatusForbidden, "origin_not_allowed", origin.Message)
		return
	}
	if !headerHasToken(r.Header, "Sec-WebSocket-Protocol", agentproto.Subprotocol) {
		httpjson.Write(w, http.StatusBadRequest, "subprotocol_required",
			"offer the WebSocket subprotocol "+agentproto.Subprotocol+" in Sec-WebSocket-Protocol")
		return
	}
	credential, ok := httpjson.BearerToken(r.Header)
	if !ok {
		w.Header().Set("WWW-Authenticate", `Bearer realm="agents"`)
		httpjson.Write(w, http.StatusUnauthorized, "unauthorized", "missing Authorization: Bearer <agent credential>")
		return
	}
	if n := h.open.Add(1); n > int64(h.cfg.MaxConnections) {
		h.open.Add(-1)
		w.Header().Set("Retry-After", "30")
		httpjson.Write(w, http.StatusServiceUnavailable, "too_many_connections", "server is at its connection limit; reconnect later")
		return
	}
	if !h.accept(w, r, credential) {
		h.open.Add(-1)
	}
}

// accept authenticates, upgrades and starts the connection. It reports
// whether a connection was started (which then owns its slot in h.open).
func (h *Hub) accept(w http.ResponseWriter, r *http.Request, credential string) bool {
	agent, err := h.auth.Authenticate(r.Context(), credential)
	switch {
	case errors.Is(err, fleet.ErrCredentialRevoked):
		httpjson.Write(w, http.StatusUnauthorized, "revoked", "the agent credential was revoked")
		return false
	case errors.Is(err, fleet.ErrCredentialInvalid):
		w.Header().Set("WWW-Authenticate", `Bearer realm="agents", error="invalid_token"`)
		httpjson.Write(w, http.StatusUnauthorized, "unauthorized", "invalid agent credential")
		return false
	case err != nil:
		h.log.Error("agent authentication failed", "remote_addr", r.RemoteAddr, "err", err)
		w.Header().Set("Retry-After", "5")
		httpjson.Write(w, http.StatusServiceUnavailable, "unavailable", "cannot authenticate agents right now; retry later")
		return false
	}
	hw := &hijackWriter{ResponseWriter: w}
	ws, err := websocket.Accept(hw, r, &websocket.AcceptOptions{
		Subprotocols:   []string{agentproto.Subprotocol},
		OriginPatterns: h.cfg.Origins.Patterns(),
	})
	if err != nil {
		h.log.Debug("websocket upgrade failed", "remote_addr", r.RemoteAddr, "err", err)
		return false
	}
	ws.SetReadLimit(h.cfg.MaxMessageBytes)
	now := h.now()
	c := &conn{
		hub: h, ws: ws, nc: hw.nc, agentID: agent.ID, remoteAddr: r.RemoteAddr,
		connectedAt: now, msgs: ratelimit.NewBucket(h.cfg.MessageRate, h.cfg.MessageBurst),
	}
	c.lastActivity.Store(now)

	h.mu.RLock()
	if h.draining {
		h.mu.RUnlock()
		_ = ws.Close(agentproto.CloseGoingAway, "server shutting down")
		return false
	}
	h.wg.Add(1)
	old := h.reg.put(c)
	h.mu.RUnlock()
	if old != nil {
		h.closeAsync(old, agentproto.CloseReplaced, "replaced by a newer connection")
	}
	go c.run()
	return true
}

func (h *Hub) isDraining() bool {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.draining
}

func headerHasToken(h http.Header, key, token string) bool {
	for _, v := range h.Values(key) {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// Buffer sizes of an upgraded connection. net/http hands a hijacked
// connection 4 KiB read and write buffers; frames from agents are small
// and large writes bypass the buffer, so smaller ones cut idle memory per
// connection by about 7 KiB.
const (
	connReadBuffer  = 256
	connWriteBuffer = 512
)

// hijackWriter lets websocket.Accept hijack the connection, then swaps the
// server's 4 KiB buffers for small ones and remembers the raw socket.
type hijackWriter struct {
	http.ResponseWriter
	nc net.Conn
}

// WriteHeaderNow forwards to frameworks (gin) that delay writing headers.
func (w *hijackWriter) WriteHeaderNow() {
	if f, ok := w.ResponseWriter.(interface{ WriteHeaderNow() }); ok {
		f.WriteHeaderNow()
	}
}

// Hijack implements http.Hijacker. Bytes the client sent right after its
// request (net/http may have buffered the first frame already) move into
// the new read buffer.
func (w *hijackWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	nc, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	w.nc = nc
	n := brw.Reader.Buffered()
	var src io.Reader = nc
	if n > 0 {
		pending, _ := brw.Reader.Peek(n)
		src = io.MultiReader(bytes.NewReader(bytes.Clone(pending)), nc)
	}
	br := bufio.NewReaderSize(src, max(connReadBuffer, n))
	if n > 0 {
		if _, err := br.Peek(n); err != nil {
			_ = nc.Close()
			return nil, nil, err
		}
	}
	return nc, bufio.NewReadWriter(br, bufio.NewWriterSize(nc, connWriteBuffer)), nil
}
