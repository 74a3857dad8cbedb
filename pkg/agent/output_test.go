package agent

import (
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/home-console/client-manager/pkg/agentproto"
)

type chunkLog struct {
	mu     sync.Mutex
	refuse bool
	chunks []agentproto.CommandOutput
}

func (l *chunkLog) emit(o agentproto.CommandOutput) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.refuse {
		return false
	}
	l.chunks = append(l.chunks, o)
	return true
}

func (l *chunkLog) setRefuse(v bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.refuse = v
}

func (l *chunkLog) all() []agentproto.CommandOutput {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]agentproto.CommandOutput(nil), l.chunks...)
}

func TestOutputTruncatesAtSharedLimit(t *testing.T) {
	var log chunkLog
	c := newOutputCollector("c1", 10, log.emit)
	c.writer(stdoutIdx).Write([]byte("123456"))
	c.writer(stderrIdx).Write([]byte("abc"))
	if n, err := c.writer(stdoutIdx).Write([]byte("XYZ")); n != 3 || err != nil {
		t.Errorf("Write over the limit = %d, %v; want 3, nil (never fails)", n, err)
	}
	stdout, stderr, truncated := c.close()
	if stdout != "123456X" || stderr != "abc" || !truncated {
		t.Errorf("got %q %q truncated=%v", stdout, stderr, truncated)
	}
	var streamed [2]strings.Builder
	for i, ch := range log.all() {
		if ch.Seq != int64(i) || ch.CommandID != "c1" {
			t.Errorf("chunk %d: seq %d id %q", i, ch.Seq, ch.CommandID)
		}
		if ch.Stream == agentproto.StreamStdout {
			streamed[0].WriteString(ch.Data)
		} else {
			streamed[1].WriteString(ch.Data)
		}
	}
	if streamed[0].String() != stdout || streamed[1].String() != stderr {
		t.Errorf("streamed %q %q, kept %q %q", streamed[0].String(), streamed[1].String(), stdout, stderr)
	}
	c.writer(stdoutIdx).Write([]byte("late"))
	if s, _, _ := c.close(); s != stdout {
		t.Errorf("a write after close changed the output: %q", s)
	}
}

func TestOutputNotTruncatedAtExactLimit(t *testing.T) {
	c := newOutputCollector("c", 4, func(agentproto.CommandOutput) bool { return true })
	c.writer(stdoutIdx).Write([]byte("abcd"))
	if _, _, truncated := c.close(); truncated {
		t.Error("output exactly at the limit was flagged truncated")
	}
}

func TestOutputChunksBySizeAndTime(t *testing.T) {
	var log chunkLog
	c := newOutputCollector("c", 1<<20, log.emit)
	w := c.writer(stdoutIdx)
	w.Write([]byte("small"))
	if n := len(log.all()); n != 0 {
		t.Fatalf("a small write was sent at once (%d chunks); want it held for the flush delay", n)
	}
	deadline := time.Now().Add(2 * time.Second)
	for len(log.all()) < 1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if chunks := log.all(); len(chunks) != 1 || chunks[0].Data != "small" {
		t.Fatalf("the flush timer did not send the pending output: %+v", chunks)
	}
	w.Write([]byte(strings.Repeat("x", outputChunkBytes*2+10)))
	chunks := log.all()
	if len(chunks) != 4 {
		t.Fatalf("a large write gave %d chunks; want 3 more at once", len(chunks))
	}
	for i, want := range []int{outputChunkBytes, outputChunkBytes, 10} {
		if len(chunks[i+1].Data) != want {
			t.Errorf("chunk %d has %d bytes, want %d", i+1, len(chunks[i+1].Data), want)
		}
	}
	c.close()
}

func TestOutputRefusedChunksAreRetriedWithoutGaps(t *testing.T) {
	var log chunkLog
	log.setRefuse(true)
	c := newOutputCollector("c", 1<<20, log.emit)
	w := c.writer(stdoutIdx)
	w.Write([]byte(strings.Repeat("a", outputChunkBytes+5)))
	w.Write([]byte("tail"))
	time.Sleep(3 * outputFlushDelay)
	log.setRefuse(false)
	deadline := time.Now().Add(2 * time.Second)
	for len(log.all()) < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	stdout, _, _ := c.close()
	var joined strings.Builder
	for i, ch := range log.all() {
		if ch.Seq != int64(i) {
			t.Errorf("chunk %d has seq %d", i, ch.Seq)
		}
		joined.WriteString(ch.Data)
	}
	if joined.String() != stdout {
		t.Errorf("streamed %d bytes, kept %d: refused output was lost", joined.Len(), len(stdout))
	}
}

func TestOutputBudget(t *testing.T) {
	a, err := New(Config{ServerURL: "http://127.0.0.1:1", Credential: testCredential})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	n := 0
	for ; n < 1000; n++ {
		if _, ok := a.outputBudget.Allow(t0); !ok {
			break
		}
	}
	if n != outputMessagesPerSecond {
		t.Errorf("%d output messages allowed at once, want the burst of %d", n, outputMessagesPerSecond)
	}
	if _, ok := a.outputBudget.Allow(t0.Add(time.Second / outputMessagesPerSecond)); !ok {
		t.Errorf("no message allowed 1/%d s later", outputMessagesPerSecond)
	}
}

func TestOutputChunksKeepUTF8Whole(t *testing.T) {
	var log chunkLog
	c := newOutputCollector("c", 1<<20, log.emit)
	w := c.writer(stdoutIdx)
	euro := "€" // 3 bytes
	text := strings.Repeat("a", outputChunkBytes-1) + euro + "end"
	w.Write([]byte(text[:outputChunkBytes-1+1])) // ends inside "€"
	w.Write([]byte(text[outputChunkBytes:]))
	stdout, _, _ := c.close()
	var joined strings.Builder
	for _, ch := range log.all() {
		if !utf8.ValidString(ch.Data) {
			t.Errorf("chunk %d splits a character", ch.Seq)
		}
		joined.WriteString(ch.Data)
	}
	if joined.String() != text || stdout != text {
		t.Error("chunks do not add up to the output")
	}
}

func TestCompleteUTF8(t *testing.T) {
	tests := []struct {
		in   string
		want int
	}{
		{"", 0}, {"abc", 3}, {"a€", 4}, {"a\xe2\x82", 1}, {"a\xe2", 1}, {"\xff\xfe", 2}, {"日本", 6}, {"日\xe6\x9c", 3},
	}
	for _, tt := range tests {
		if got := completeUTF8([]byte(tt.in)); got != tt.want {
			t.Errorf("completeUTF8(%q) = %d, want %d", tt.in, got, tt.want)
		}
	}
}

func TestResultCacheBounds(t *testing.T) {
	var c resultCache
	now := time.Now()
	res := func(id string, out int) agentproto.CommandResult {
		return agentproto.CommandResult{CommandID: id, Status: agentproto.ResultCompleted, Stdout: strings.Repeat("o", out)}
	}
	for i := range rememberedResults {
		c.add(res("id"+itoa(i), 0), now)
		if i%2 == 0 {
			c.ack("id" + itoa(i))
		}
	}
	if n := len(c.takeUnacked(now, now)); n != rememberedResults/2 {
		t.Fatalf("unacked = %d", n)
	}
	if dropped := c.add(res("new", 0), now); dropped != "" {
		t.Errorf("dropped unacked %q while acked results could go", dropped)
	}
	if _, ok := c.get("id0"); ok {
		t.Error("the oldest acked result is still remembered past the bound")
	}
	if _, ok := c.get("id1"); !ok {
		t.Error("an unacked result was forgotten")
	}
	big := rememberedOutputBytes/2 + 1
	c.add(res("big1", big), now)
	c.add(res("big2", big), now)
	if c.outputBytes > rememberedOutputBytes {
		t.Errorf("output held %d > bound", c.outputBytes)
	}
	r, ok := c.get("big1")
	if !ok || r.Stdout != "" || !r.Truncated || r.Error != outputDroppedNote {
		t.Errorf("the oldest big result should keep its id but lose its output: %+v", r.Error)
	}
	if r, _ := c.get("big2"); len(r.Stdout) != big {
		t.Error("the newest result lost its output")
	}
}

func TestResultCacheTakeUnacked(t *testing.T) {
	var c resultCache
	t0 := time.Now()
	c.add(agentproto.CommandResult{CommandID: "a"}, t0)
	c.add(agentproto.CommandResult{CommandID: "b"}, t0.Add(time.Second))
	if got := c.takeUnacked(t0, t0.Add(2*time.Second)); len(got) != 1 || got[0].CommandID != "a" {
		t.Fatalf("due at t0: %v", got)
	}
	if got := c.takeUnacked(t0.Add(time.Second), t0.Add(2*time.Second)); len(got) != 1 || got[0].CommandID != "b" {
		t.Fatalf("a was just re-sent, b is due: %v", got)
	}
	c.ack("a")
	if got := c.takeUnacked(t0.Add(time.Hour), t0.Add(time.Hour)); len(got) != 1 || got[0].CommandID != "b" {
		t.Fatalf("after acking a: %v", got)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }
