package sim

import (
	"context"
	"fmt"
	"io"
	"sync/atomic"
	"time"
)

// stats counts what the simulated agents do. Safe for concurrent use.
type stats struct {
	count  int
	start  time.Time
	runner *Runner

	live, peak, connects, reconnects, disconnects, stopped atomic.Int64
	allConnectedAt                                         atomic.Int64 // unix nanos
}

func newStats(count int) *stats {
	return &stats{count: count, start: time.Now(), runner: &Runner{}}
}

func (s *stats) connected(before bool) {
	s.connects.Add(1)
	if before {
		s.reconnects.Add(1)
	}
	n := s.live.Add(1)
	for p := s.peak.Load(); n > p && !s.peak.CompareAndSwap(p, n); p = s.peak.Load() {
	}
	if n == int64(s.count) {
		s.allConnectedAt.CompareAndSwap(0, time.Now().UnixNano())
	}
}

func (s *stats) disconnected() {
	s.live.Add(-1)
	s.disconnects.Add(1)
}

// report writes a stats line every interval until ctx is done.
func (s *stats) report(ctx context.Context, w io.Writer, interval time.Duration) {
	if w == nil || interval <= 0 {
		<-ctx.Done()
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	lastConnects, last := int64(0), time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			c := s.connects.Load()
			rate := float64(c-lastConnects) / now.Sub(last).Seconds()
			fmt.Fprintf(w, "sim t=%s connected=%d/%d connects/s=%.1f reconnects=%d disconnects=%d commands=%d stopped=%d\n",
				now.Sub(s.start).Round(time.Second), s.live.Load(), s.count, rate,
				s.reconnects.Load(), s.disconnects.Load(), s.runner.Handled(), s.stopped.Load())
			lastConnects, last = c, now
		}
	}
}

func (s *stats) summary(sum Summary) Summary {
	sum.ConnectedAtEnd = s.live.Load()
	sum.ConnectedPeak = s.peak.Load()
	sum.Connects = s.connects.Load()
	sum.Reconnects = s.reconnects.Load()
	sum.Disconnects = s.disconnects.Load()
	sum.Commands = s.runner.Handled()
	sum.DuplicateExecutions = s.runner.Duplicates()
	sum.Stopped = s.stopped.Load()
	if at := s.allConnectedAt.Load(); at != 0 {
		sum.AllConnectedS = time.Unix(0, at).Sub(s.start).Seconds()
	}
	sum.DurationS = time.Since(s.start).Seconds()
	return sum
}
