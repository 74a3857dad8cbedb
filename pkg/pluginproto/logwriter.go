package pluginproto

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
)

// Bounds of a [LogWriter]'s queue.
const (
	// logQueueLines is how many writes may wait to be forwarded.
	logQueueLines = 4096
	// logQueueBytes is how many bytes may wait to be forwarded.
	logQueueBytes = 1 << 20
)

// errNotAttached is returned by a flush while no stream is attached.
var errNotAttached = errors.New("log writer not attached to the runtime's stream")

// LogWriter is the destination of a plugin's logs. It never blocks its
// callers for long, and the logs written through it still reach a runtime
// that re-attached to the plugin after its own restart. Use one LogWriter
// for every logger of the process and pass it to [Serve] with
// [WithLogWriter]:
//
//	logs := pluginproto.NewLogWriter(os.Stderr)
//	log := slog.New(slog.NewJSONHandler(logs, nil))
//	// ... build the plugin with log ...
//	pluginproto.Serve(p, pluginproto.WithLogWriter(logs))
//
// Until Serve has connected to the runtime, and again after Serve returns,
// a LogWriter writes straight to its fallback writer (normally os.Stderr,
// which the runtime that launched the process reads). While Serve runs, it
// queues each write (a logger writes one line per call) and one goroutine
// forwards the queue to go-plugin's stdio stream, which every runtime
// connected to the plugin reads, a re-attached one included. While no
// runtime reads the stream the queue fills up; further writes are then
// dropped and counted, and a line "pluginproto: N log lines dropped"
// follows once writing resumes.
//
// A LogWriter is safe for concurrent use. Standalone (without Serve) it is
// a plain synchronous writer to its fallback.
type LogWriter struct {
	fallback io.Writer

	mu      sync.Mutex
	queue   chan logEntry     // nil while not attached
	flushes chan flushRequest // nil while not attached

	queued  atomic.Int64 // bytes in queue
	dropped atomic.Int64 // writes dropped since the last report
}

// NewLogWriter returns a LogWriter writing to fallback until [Serve]
// attaches it to the runtime.
func NewLogWriter(fallback io.Writer) *LogWriter {
	return &LogWriter{fallback: fallback}
}

// Write implements io.Writer. While attached it copies p into the queue,
// or drops it if the queue is full, and always reports success.
func (w *LogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.queue == nil {
		return w.fallback.Write(p)
	}
	if w.queued.Load()+int64(len(p)) > logQueueBytes {
		w.dropped.Add(1)
		return len(p), nil
	}
	e := logEntry{data: slices.Clone(p), droppedBefore: w.dropped.Swap(0)}
	w.queued.Add(int64(len(p)))
	select {
	case w.queue <- e:
	default:
		w.queued.Add(-int64(len(p)))
		w.dropped.Add(e.droppedBefore + 1)
	}
	return len(p), nil
}

// logEntry is one queued write.
type logEntry struct {
	data []byte
	// droppedBefore counts the writes dropped just before this one.
	droppedBefore int64
}

// attach starts forwarding to dst, go-plugin's redirected stderr. A call
// while attached does nothing.
func (w *LogWriter) attach(dst io.Writer) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.queue != nil {
		return
	}
	w.queue = make(chan logEntry, logQueueLines)
	w.flushes = make(chan flushRequest)
	go w.forward(dst, w.queue, w.flushes)
}

// detach makes later writes go to the fallback again. Writes still queued
// are forwarded to the stream if anything still reads it.
func (w *LogWriter) detach() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.queue == nil {
		return
	}
	close(w.queue)
	w.queue, w.flushes = nil, nil
}

// flush waits until every write queued before the call has been
// forwarded, followed by marker (which is never dropped).
func (w *LogWriter) flush(ctx context.Context, marker []byte) error {
	w.mu.Lock()
	flushes := w.flushes
	w.mu.Unlock()
	if flushes == nil {
		return errNotAttached
	}
	req := flushRequest{marker: marker, done: make(chan struct{})}
	select {
	case flushes <- req:
	case <-ctx.Done():
		return fmt.Errorf("flush logs: %w", ctx.Err())
	}
	select {
	case <-req.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("flush logs: %w", ctx.Err())
	}
}

// flushRequest asks the forwarder to write marker once the writes queued
// so far are forwarded, then to close done.
type flushRequest struct {
	marker []byte
	done   chan struct{}
}

// forward writes the queue to dst until the queue is closed, and answers
// flush requests.
func (w *LogWriter) forward(dst io.Writer, queue <-chan logEntry, flushes <-chan flushRequest) {
	for {
		select {
		case e, ok := <-queue:
			if !ok {
				return
			}
			w.write(dst, e, queue)
		case req := <-flushes:
			// Everything queued before the request is in the queue now.
			for n := len(queue); n > 0; n-- {
				if e, ok := <-queue; ok {
					w.write(dst, e, queue)
				}
			}
			_, _ = dst.Write(req.marker)
			close(req.done)
		}
	}
}

// write forwards one queued write, preceded by the report of the writes
// dropped before it. If the queue is then empty, the writes dropped since
// are reported too: under w.mu, Write neither queues nor drops, so they
// were all dropped after everything forwarded so far.
func (w *LogWriter) write(dst io.Writer, e logEntry, queue <-chan logEntry) {
	w.queued.Add(-int64(len(e.data)))
	reportDrops(dst, e.droppedBefore)
	_, _ = dst.Write(e.data)
	if len(queue) > 0 {
		return
	}
	var n int64
	w.mu.Lock()
	if len(queue) == 0 {
		n = w.dropped.Swap(0)
	}
	w.mu.Unlock()
	reportDrops(dst, n)
}

// reportDrops writes that n writes were dropped, if n > 0.
func reportDrops(dst io.Writer, n int64) {
	if n > 0 {
		_, _ = fmt.Fprintf(dst, "pluginproto: %d log lines dropped (no runtime was reading the plugin's logs)\n", n)
	}
}
