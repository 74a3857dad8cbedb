package pluginproto

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestStdioSinkSplitsLinesAndTakesMarkers(t *testing.T) {
	var out syncBuffer
	s := newStdioSink(&out)
	stream := "first line\nsecond" + string(markerLine("abc")) + "\nthird\n" + string(markerLine("def")) + "tail"
	// go-plugin delivers the stream in chunks cut anywhere.
	for i := 0; i < len(stream); i += 3 {
		if _, err := s.Write([]byte(stream[i:min(i+3, len(stream))])); err != nil {
			t.Fatal(err)
		}
	}
	want := "first line\nsecond\x00pluginproto-log-flush abc\n\nthird\n"
	if got := out.String(); got != want {
		t.Errorf("passed on %q, want %q", got, want)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := s.wait(ctx, "def"); err != nil {
		t.Errorf("wait for a seen marker: %v", err)
	}
	short, cancel2 := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel2()
	if err := s.wait(short, "abc"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a marker in the middle of a line is not a marker: %v", err)
	}
}

func TestStdioSinkWaitWakesOnMarker(t *testing.T) {
	var out syncBuffer
	s := newStdioSink(&out)
	done := make(chan error)
	go func() { done <- s.wait(context.Background(), "n") }()
	time.Sleep(10 * time.Millisecond)
	_, _ = s.Write([]byte("log\n"))
	_, _ = s.Write(markerLine("n"))
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("wait did not return after the marker")
	}
	if out.String() != "log\n" {
		t.Errorf("passed on %q", out.String())
	}
}

func TestStdioSinkLongLine(t *testing.T) {
	var out syncBuffer
	s := newStdioSink(&out)
	long := strings.Repeat("y", maxSinkLine+10)
	_, _ = s.Write([]byte(long))
	if want := strings.Repeat("y", maxSinkLine) + "\n"; out.String() != want {
		t.Errorf("passed on %d bytes of an unterminated long line, want its first %d as a line", len(out.String()), maxSinkLine)
	}
	_, _ = s.Write([]byte("z\n"))
	if want := long[:maxSinkLine] + "\n" + long[maxSinkLine:] + "z\n"; out.String() != want {
		t.Errorf("the rest of the long line was not passed on as a line")
	}
}
