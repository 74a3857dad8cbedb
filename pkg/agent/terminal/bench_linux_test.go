//go:build linux

package terminal

import (
	"bytes"
	"context"
	"slices"
	"testing"
	"time"
)

// readUntil reads s until the bytes read contain want.
func readUntil(b *testing.B, s *Session, want []byte, buf []byte) {
	var got []byte
	for !bytes.Contains(got, want) {
		n, err := s.Read(buf)
		if err != nil {
			b.Fatalf("read: %v (after %q)", err, got)
		}
		got = append(got, buf[:n]...)
	}
}

// BenchmarkKeystrokeEcho measures one typed character to its echo through
// the PTY (the line discipline echoes it while the shell waits for a line),
// and reports the p50 and p99 of those round trips.
func BenchmarkKeystrokeEcho(b *testing.B) {
	m, err := New(shellConfig())
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = m.Close() }()
	s, err := m.Open(context.Background(), OpenRequest{})
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 4096)
	if _, err := s.Write([]byte("PS1='ready> '; echo set-$((6*7))\n")); err != nil {
		b.Fatal(err)
	}
	readUntil(b, s, []byte("set-42\r\nready> "), buf)
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		if _, err := s.Write([]byte{'a'}); err != nil {
			b.Fatal(err)
		}
		readUntil(b, s, []byte{'a'}, buf)
		lat = append(lat, time.Since(start))
		if _, err := s.Write([]byte{0x7f}); err != nil { // erase it again
			b.Fatal(err)
		}
		readUntil(b, s, []byte("\b \b"), buf)
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}
