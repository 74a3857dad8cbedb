package api

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/home-console/client-manager/internal/drain"
	"github.com/home-console/client-manager/internal/events"
	"github.com/home-console/client-manager/internal/longlived"
)

// streamKeepAlive is how often an idle event stream gets a comment line.
const streamKeepAlive = 15 * time.Second

// Defaults of the event stream's bounds (Server.StreamQueue and
// Server.StreamWriteTimeout).
const (
	DefaultStreamQueue        = 1024
	DefaultStreamWriteTimeout = 10 * time.Second
)

// StreamDrop says why an event stream was dropped: the code of its last
// "event: dropped" block and the reason label of the metric.
type StreamDrop string

// Reasons to drop an event stream.
const (
	// DropQueueFull: more events were waiting for the consumer than the
	// stream's queue holds.
	DropQueueFull StreamDrop = "queue_full"
	// DropWriteTimeout: one write to the consumer did not complete within
	// the stream's write timeout.
	DropWriteTimeout StreamDrop = "write_timeout"
)

// streamBatch bounds the events written between two flushes.
const streamBatch = 256

// streamEvents answers GET /api/events[?types=command.,client.connected]
// with a Server-Sent Events stream: one "event: <type>" / "id: <seq>" /
// "data: <json>" block per event whose type starts with one of the given
// prefixes (all events without types). A consumer that does not keep up
// is dropped: when more than StreamQueue events wait for it, the stream
// ends with an "event: dropped" block saying why; when one write does not
// complete within StreamWriteTimeout, the stream is cut. When the server
// starts to drain (see internal/drain) the stream ends at once with an
// "event: shutdown" block saying why.
func (s *Server) streamEvents(c *gin.Context) {
	prefixes, ok := s.eventTypes(c)
	if !ok {
		return
	}
	queue := cmp.Or(s.StreamQueue, DefaultStreamQueue)
	sub := s.Bus.Subscribe(queue)
	defer sub.Close()

	w, _ := longlived.Stream(c.Writer, c.Request, cmp.Or(s.StreamWriteTimeout, DefaultStreamWriteTimeout))
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	fmt.Fprint(w, ": connected\n\n")
	if s.flushed(c, w.FlushError()) {
		s.pump(c, w, sub, prefixes, queue)
	}
}

// pump writes sub's events to w until the stream ends.
func (s *Server) pump(c *gin.Context, w *longlived.Writer, sub *events.Subscription, prefixes []string, queue int) {
	ctx, stop := drain.Watch(c.Request.Context())
	defer stop()
	keepAlive := time.NewTicker(streamKeepAlive)
	defer keepAlive.Stop()
	for {
		select {
		case <-sub.Lagged():
			s.dropStream(c, w, sub, queue)
			return
		default:
		}
		var err error
		select {
		case <-ctx.Done():
			if reason, ok := drain.Reason(ctx); ok {
				writeShutdown(w, reason)
			}
			return
		case <-sub.Lagged():
			continue
		case <-keepAlive.C:
			_, err = fmt.Fprint(w, ": keep-alive\n\n")
		case e := <-sub.C:
			err = writeEvents(w, e, sub, prefixes)
		}
		if err == nil {
			err = w.FlushError()
		}
		if !s.flushed(c, err) {
			return
		}
	}
}

// writeEvents writes e and then the events already waiting in sub, up to
// streamBatch, that match prefixes.
func writeEvents(w io.Writer, e events.Event, sub *events.Subscription, prefixes []string) error {
	for n := 0; ; n++ {
		if matches(string(e.Type()), prefixes) {
			if data, err := json.Marshal(e); err == nil {
				if _, err := fmt.Fprintf(w, "id: %d\nevent: %s\ndata: %s\n\n", e.Seq, e.Type(), data); err != nil {
					return err
				}
			}
		}
		if n+1 >= streamBatch {
			return nil
		}
		select {
		case e = <-sub.C:
		default:
			return nil
		}
	}
}

// flushed reports whether a write or flush succeeded; a write that timed
// out drops the stream (counted; nothing more can be written to it).
func (s *Server) flushed(c *gin.Context, err error) bool {
	if err == nil {
		return true
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		s.streamDropped(c, DropWriteTimeout)
	}
	return false
}

// dropStream ends a stream whose queue overflowed with its last block:
// event: dropped with data {"code":"queue_full","reason":"...","missed":N}.
func (s *Server) dropStream(c *gin.Context, w *longlived.Writer, sub *events.Subscription, queue int) {
	data, _ := json.Marshal(struct {
		Code   StreamDrop `json:"code"`
		Reason string     `json:"reason"`
		Missed uint64     `json:"missed"`
	}{DropQueueFull, fmt.Sprintf("more than %d events were waiting: the consumer does not keep up", queue), sub.Dropped()})
	fmt.Fprintf(w, "event: dropped\ndata: %s\n\n", data)
	_ = w.FlushError()
	s.streamDropped(c, DropQueueFull)
}

// streamDropped logs and counts a dropped stream.
func (s *Server) streamDropped(c *gin.Context, why StreamDrop) {
	s.Log.Info("event stream dropped", "reason", string(why), "remote_addr", c.Request.RemoteAddr)
	if s.StreamDropped != nil {
		s.StreamDropped(why)
	}
}

// writeShutdown writes a stream's last block: event: shutdown with data
// {"reason":"..."}.
func writeShutdown(w *longlived.Writer, reason string) {
	data, _ := json.Marshal(struct {
		Reason string `json:"reason"`
	}{reason}) // a struct of one string always encodes
	fmt.Fprintf(w, "event: shutdown\ndata: %s\n\n", data)
	_ = w.FlushError()
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
