package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
)

// streamKeepAlive is how often an idle event stream gets a comment line.
const streamKeepAlive = 15 * time.Second

// streamEvents answers GET /api/events[?types=command.,client.connected]
// with a Server-Sent Events stream: one "event: <type>" / "id: <seq>" /
// "data: <json>" block per event whose type starts with one of the given
// prefixes (all events without types). A subscriber that falls behind gets
// an "event: dropped" block with the number of events it missed.
func (s *Server) streamEvents(c *gin.Context) {
	var prefixes []string
	if v := c.Query("types"); v != "" {
		prefixes = strings.Split(v, ",")
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

	keepAlive := time.NewTicker(streamKeepAlive)
	defer keepAlive.Stop()
	for {
		select {
		case <-c.Request.Context().Done():
			return
		case <-keepAlive.C:
			fmt.Fprint(w, ": keep-alive\n\n")
		case e := <-sub.C:
			if n := sub.Dropped(); n > 0 {
				fmt.Fprintf(w, "event: dropped\ndata: {\"missed\":%d}\n\n", n)
			}
			if !matches(e.Type, prefixes) {
				continue
			}
			data, err := json.Marshal(e)
			if err != nil {
				continue
			}
			fmt.Fprintf(w, "id: %d\nevent: %s\ndata: %s\n\n", e.Seq, e.Type, data)
		}
		w.Flush()
	}
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
