package sessions

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/home-console/client-manager/internal/fleet"
)

// castEvent is one parsed event line.
type castEvent struct {
	At   float64
	Type string
	Text string
}

// readCast parses an asciicast v2 file strictly: a header object with
// version 2, then [number, string, string] lines.
func readCast(t *testing.T, path string) (castHeader, []castEvent) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	if !sc.Scan() {
		t.Fatal("empty recording")
	}
	var h castHeader
	if err := json.Unmarshal(sc.Bytes(), &h); err != nil || h.Version != 2 {
		t.Fatalf("header %q: %v", sc.Text(), err)
	}
	var events []castEvent
	for sc.Scan() {
		var raw []json.RawMessage
		if err := json.Unmarshal(sc.Bytes(), &raw); err != nil || len(raw) != 3 {
			t.Fatalf("event line %q: %v", sc.Text(), err)
		}
		var e castEvent
		if json.Unmarshal(raw[0], &e.At) != nil || json.Unmarshal(raw[1], &e.Type) != nil || json.Unmarshal(raw[2], &e.Text) != nil {
			t.Fatalf("event line %q is not [float, string, string]", sc.Text())
		}
		events = append(events, e)
	}
	return h, events
}

func TestRecorderFormat(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.cast")
	start := time.Now()
	r, err := newRecorder(path, castHeader{Version: 2, Width: 100, Height: 30, Timestamp: start.Unix(),
		Env: map[string]string{"TERM": "xterm"}, Title: "t"}, start, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	e := "é" // two bytes, split between two chunks
	r.Event(start.Add(time.Second), eventOutput, []byte("hello "+e[:1]))
	r.Event(start.Add(1500*time.Millisecond), eventOutput, []byte(e[1:]+"\x1b[0m\n"))
	r.Event(start.Add(2*time.Second), eventInput, []byte("ls\r"))
	size, err := r.Close()
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(path); fi.Size() != size {
		t.Fatalf("size %d, file %d", size, fi.Size())
	}
	h, events := readCast(t, path)
	if h.Width != 100 || h.Height != 30 || h.Env["TERM"] != "xterm" || h.Timestamp != start.Unix() {
		t.Fatalf("header %+v", h)
	}
	want := []castEvent{{1, "o", "hello "}, {1.5, "o", "é\x1b[0m\n"}, {2, "i", "ls\r"}}
	if len(events) != len(want) {
		t.Fatalf("events %+v, want %+v", events, want)
	}
	for i := range want {
		if events[i] != want[i] {
			t.Errorf("event %d = %+v, want %+v", i, events[i], want[i])
		}
	}
}

func TestRecorderSizeCap(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.cast")
	start := time.Now()
	const max = 1024
	r, err := newRecorder(path, castHeader{Version: 2, Width: 80, Height: 24, Env: map[string]string{}}, start, max)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		r.Event(start.Add(time.Duration(i)*time.Millisecond), eventOutput, []byte(strings.Repeat("x", 50)))
	}
	size, err := r.Close()
	if err != nil || size > max {
		t.Fatalf("size %d (cap %d), %v", size, max, err)
	}
	_, events := readCast(t, path)
	last := events[len(events)-1]
	if len(events) < 5 || last.Type != eventMarker || last.Text != capMarker {
		t.Fatalf("%d events, last %+v: want output then one cap marker", len(events), last)
	}
	for _, e := range events[:len(events)-1] {
		if e.Type != eventOutput {
			t.Fatalf("event %+v before the marker", e)
		}
	}
}

func TestCompleteUTF8(t *testing.T) {
	euro := "€" // 3 bytes
	tests := []struct {
		in   string
		want int
	}{
		{"", 0}, {"abc", 3}, {"a" + euro, 4}, {"a" + euro[:1], 1}, {"a" + euro[:2], 1},
		{"\xff", 1}, {"a\x80", 2},
	}
	for _, tt := range tests {
		if got := completeUTF8([]byte(tt.in)); got != tt.want {
			t.Errorf("completeUTF8(%q) = %d, want %d", tt.in, got, tt.want)
		}
	}
}

// ended writes an ended session record with a recording of size bytes.
func ended(t *testing.T, s *recordings, id string, endedAt time.Time, size int) {
	t.Helper()
	if err := os.WriteFile(s.castPath(id), make([]byte, size), 0o600); err != nil {
		t.Fatal(err)
	}
	s.write(fleet.TerminalSession{ID: id, AgentID: "a", StartedAt: endedAt.Add(-time.Minute), EndedAt: &endedAt,
		RecordingBytes: int64(size), State: fleet.SessionEnded})
}

func TestPrune(t *testing.T) {
	now := time.Now()
	tests := []struct {
		name      string
		retention time.Duration
		maxTotal  int64
		keep      []string
	}{
		{"retention", time.Hour, 1 << 20, []string{"new", "mid"}},
		{"total cap deletes the oldest first", 1000 * time.Hour, 250, []string{"new", "mid"}},
		{"tight cap", 1000 * time.Hour, 150, []string{"new"}},
		{"all kept", 1000 * time.Hour, 1 << 20, []string{"new", "mid", "old"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &recordings{dir: t.TempDir(), log: discardLog()}
			if err := s.recover(now); err != nil {
				t.Fatal(err)
			}
			ended(t, s, "old", now.Add(-2*time.Hour), 100)
			ended(t, s, "mid", now.Add(-30*time.Minute), 100)
			ended(t, s, "new", now.Add(-time.Minute), 100)
			s.prune(now, tt.retention, tt.maxTotal)
			var got []string
			for _, r := range s.list("", 10) {
				got = append(got, r.ID)
			}
			if strings.Join(got, ",") != strings.Join(tt.keep, ",") {
				t.Fatalf("kept %v, want %v", got, tt.keep)
			}
			for _, id := range []string{"old", "mid", "new"} {
				_, err := os.Stat(s.castPath(id))
				if kept := strings.Contains(strings.Join(tt.keep, ","), id); kept != (err == nil) {
					t.Errorf("%s: recording file present %v, want %v", id, err == nil, kept)
				}
			}
		})
	}
}

func TestRecoverEndsActiveSessions(t *testing.T) {
	dir := t.TempDir()
	s := &recordings{dir: dir, log: discardLog()}
	if err := s.recover(time.Now()); err != nil {
		t.Fatal(err)
	}
	s.write(fleet.TerminalSession{ID: "ses_1", AgentID: "a", StartedAt: time.Now(), State: fleet.SessionActive})
	if err := os.WriteFile(filepath.Join(dir, "junk.json"), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	again := &recordings{dir: dir, log: discardLog()}
	if err := again.recover(time.Now()); err != nil {
		t.Fatal(err)
	}
	rec, ok := again.get("ses_1")
	if !ok || rec.State != fleet.SessionEnded || rec.EndedAt == nil || rec.EndReason != reasonRestarted {
		t.Fatalf("record after restart: %+v %v", rec, ok)
	}
}

func TestCloseReason(t *testing.T) {
	long := strings.Repeat("é", 100) // 200 bytes
	got := closeReason(long)
	if len(got) > maxCloseReason || !utf8.ValidString(got) || len(got) < maxCloseReason-1 {
		t.Fatalf("closeReason: %d bytes, valid %v", len(got), utf8.ValidString(got))
	}
	if closeReason("short") != "short" {
		t.Fatal("a short reason changed")
	}
}
