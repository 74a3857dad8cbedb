package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/home-console/client-manager/internal/drain"
)

// streamKeepAlive is how often an idle event stream gets a comment line.
const streamKeepAlive = 15 * time.Second

// streamEvents answers GET /api/events[?types=command.,client.connected]
// with a Server-Sent Events stream: one "event: <type>" / "id: <seq>" /
// "data: <json>" block per event whose type starts with one of the given
// prefixes (all events without types). A subscriber that falls behind gets
// an "event: dropped" block with the number of events it missed. When the
// server starts to drain (see internal/drain) the stream ends at once with
// an "event: shutdown" block saying why.
func (s *Server) streamEvents(c *gin.Context) {
	prefixes, ok := s.eventTypes(c)
	if !ok {
		return
	}
	sub := s.Bus.Subscribe(256)
	defer sub.Close()

	w := c.Writer
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	fmt.Fprint(w, ": connected\n\n")
	w.Flush()

	ctx, stop := drain.Watch(c.Request.Context())
	defer stop()
	keepAlive := time.NewTicker(streamKeepAlive)
	defer keepAlive.Stop()
	for {
		select {
		case <-ctx.Done():
			if reason, ok := drain.Reason(ctx); ok {
				writeShutdown(w, reason)
			}
			return
		case <-keepAlive.C:
			fmt.Fprint(w, ": keep-alive\n\n")
		case e := <-sub.C:
			if n := sub.Dropped(); n > 0 {
				fmt.Fprintf(w, "event: dropped\ndata: {\"missed\":%d}\n\n", n)
			}
			if !matches(string(e.Type()), prefixes) {
				continue
			}
			data, err := json.Marshal(e)
			if err != nil {
				continue
			}
			fmt.Fprintf(w, "id: %d\nevent: %s\ndata: %s\n\n", e.Seq, e.Type(), data)
		}
		w.Flush()
	}
}

// writeShutdown writes a stream's last block: event: shutdown with data
// {"reason":"..."}.
func writeShutdown(w gin.ResponseWriter, reason string) {
	data, _ := json.Marshal(struct {
		Reason string `json:"reason"`
	}{reason}) // a struct of one string always encodes
	fmt.Fprintf(w, "event: shutdown\ndata: %s\n\n", data)
	w.Flush()
}

func matches(typ string, prefixes []string) bool {
	if len(prefixes) == 0 {
		return true
	}
	for _, p := range prefixes {
		if strings.HasPrefix(typ, p) {
			return true
		}
	}
	return false
}
