package files

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestStat(t *testing.T) {
	tr := newTree(t)
	r := newRoots(t, Config{Roots: []string{tr.root}})
	for _, tc := range []struct {
		path  string
		want  error
		size  int64
		isDir bool
	}{
		{tr.in("file"), nil, 12, false},
		{tr.in("in-link"), nil, 12, false},
		{tr.in("dir"), nil, -1, true},
		{tr.in("hard"), nil, 6, false}, // only reads refuse hard links
		{tr.in("missing"), ErrNotFound, 0, false},
		{tr.in("esc-file"), ErrOutsideRoots, 0, false},
	} {
		info, err := r.Stat(tc.path)
		checkErr(t, "Stat("+tc.path+")", err, tc.want)
		if err != nil {
			continue
		}
		if info.IsDir != tc.isDir || tc.size >= 0 && info.Size != tc.size || info.Name != filepath.Base(tc.path) || info.ModTime.IsZero() {
			t.Errorf("Stat(%s) = %+v", tc.path, info)
		}
	}
	if info, _ := r.Stat(tr.in("file")); info.Mode.Perm() != 0o640 {
		t.Errorf("mode %v, want 0640", info.Mode)
	}
}

func TestList(t *testing.T) {
	tr := newTree(t)
	r := newRoots(t, Config{Roots: []string{tr.root}})
	l, err := r.List(tr.root)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range l.Entries {
		names = append(names, e.Name)
	}
	want := []string{"dangling", "dir", "esc-dir", "esc-file", "file", "hard", "in-abs", "in-link"}
	if !slices.Equal(names, want) || l.Truncated {
		t.Errorf("List = %q (truncated %v), want %q", names, l.Truncated, want)
	}
	if e := l.Entries[slices.Index(names, "esc-dir")]; e.Mode&os.ModeSymlink == 0 {
		t.Errorf("a symbolic link listed as %v", e.Mode)
	}
	_, err = r.List(tr.in("file"))
	checkErr(t, "List(file)", err, ErrNotDir)
	_, err = r.List(tr.in("esc-dir"))
	checkErr(t, "List(esc-dir)", err, ErrOutsideRoots)
}

func TestListTruncation(t *testing.T) {
	for _, tc := range []struct {
		files, limit, want int
		truncated          bool
	}{
		{12, 5, 5, true},
		{5, 5, 5, false},
		{0, 5, 0, false},
	} {
		dir := t.TempDir()
		for i := range tc.files {
			must(t, os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%02d", i)), nil, 0o644))
		}
		r := newRoots(t, Config{Roots: []string{dir}, MaxListEntries: tc.limit})
		l, err := r.List(dir)
		if err != nil || len(l.Entries) != tc.want || l.Truncated != tc.truncated {
			t.Errorf("%d files, limit %d: %d entries, truncated %v, %v", tc.files, tc.limit, len(l.Entries), l.Truncated, err)
		}
	}
}
