package secret

import (
	"strings"
	"testing"
)

func TestNewIsRandomAndHashMatches(t *testing.T) {
	a, b := New(), New()
	if a == b {
		t.Fatalf("two secrets are equal: %q", a)
	}
	if len(a) != 43 {
		t.Fatalf("secret length = %d, want 43", len(a))
	}
	h := Hash(a)
	tests := []struct {
		name string
		in   string
		want bool
	}{
		{"same secret", a, true},
		{"other secret", b, false},
		{"empty", "", false},
		{"prefix", a[:10], false},
	}
	for _, tt := range tests {
		if got := Matches(tt.in, h); got != tt.want {
			t.Errorf("%s: Matches = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestNewID(t *testing.T) {
	id := NewID("agt_")
	if !strings.HasPrefix(id, "agt_") || len(id) != 28 {
		t.Fatalf("NewID = %q", id)
	}
	if id == NewID("agt_") {
		t.Fatal("ids repeat")
	}
}
