package linesplit

import (
	"strings"
	"sync"
	"testing"
)

func TestWriter(t *testing.T) {
	tests := []struct {
		name   string
		stream string
		max    int
		want   []string
	}{
		{"lines", "a\nbb\n\nccc\n", 10, []string{"a", "bb", "", "ccc"}},
		{"partial tail is kept back", "a\nb", 10, []string{"a"}},
		{"crlf keeps the cr", "a\r\n", 10, []string{"a\r"}},
		{"line of exactly max", "abcd\n", 4, []string{"abcd"}},
		{"long line in pieces", "abcdefghij\n", 4, []string{"abcd", "efgh", "ij"}},
		{"long unterminated", "abcdefghi", 4, []string{"abcd", "efgh"}},
	}
	for _, tt := range tests {
		for _, chunk := range []int{1, 3, len(tt.stream)} {
			var got []string
			w := New(tt.max, func(l []byte) { got = append(got, string(l)) })
			for i := 0; i < len(tt.stream); i += chunk {
				n, err := w.Write([]byte(tt.stream[i:min(i+chunk, len(tt.stream))]))
				if err != nil || n != min(chunk, len(tt.stream)-i) {
					t.Fatalf("%s: Write = %d, %v", tt.name, n, err)
				}
			}
			if strings.Join(got, "|") != strings.Join(tt.want, "|") || len(got) != len(tt.want) {
				t.Errorf("%s in chunks of %d: lines %q, want %q", tt.name, chunk, got, tt.want)
			}
		}
	}
}

func TestWriterConcurrentWritesKeepLinesWhole(t *testing.T) {
	var mu sync.Mutex
	counts := map[string]int{}
	w := New(1024, func(l []byte) {
		mu.Lock()
		counts[string(l)]++
		mu.Unlock()
	})
	var wg sync.WaitGroup
	for _, line := range []string{"alpha", "beta"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 1000 {
				_, _ = w.Write([]byte(line + "\n"))
			}
		}()
	}
	wg.Wait()
	if len(counts) != 2 || counts["alpha"] != 1000 || counts["beta"] != 1000 {
		t.Fatalf("lines seen: %v", counts)
	}
}
