package files

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

func TestResolve(t *testing.T) {
	tr := newTree(t)
	r := newRoots(t, Config{Roots: []string{tr.root}})
	realRoot, _ := filepath.EvalSymlinks(tr.root)
	for _, tc := range []struct {
		path string
		want error
		real string // expected resolution, relative to the root
	}{
		{tr.root, nil, "."},
		{tr.in("file"), nil, "file"},
		{tr.in("dir/../file"), nil, "file"},
		{tr.in("in-link"), nil, "file"},
		{tr.in("in-abs"), nil, "file"},
		{tr.in("new/deeper/file"), nil, "new/deeper/file"},
		{tr.in("../outside/secret"), ErrOutsideRoots, ""},
		{tr.in("dir/../../outside/secret"), ErrOutsideRoots, ""},
		{filepath.Join(tr.outside, "secret"), ErrOutsideRoots, ""},
		{tr.root + "-sibling/x", ErrOutsideRoots, ""},
		{tr.in("esc-file"), ErrOutsideRoots, ""},
		{tr.in("esc-dir/secret"), ErrOutsideRoots, ""},
		{tr.in("esc-dir/not-yet"), ErrOutsideRoots, ""},
		{tr.in("dir/esc-up"), ErrOutsideRoots, ""},
		{tr.in("dangling"), ErrNotFound, ""},
		{tr.in("file/below-a-file"), ErrNotFound, ""},
		{"root/file", ErrBadPath, ""},
		{"", ErrBadPath, ""},
		{tr.in("nul\x00"), ErrBadPath, ""},
	} {
		got, err := r.Resolve(tc.path)
		checkErr(t, "Resolve("+tc.path+")", err, tc.want)
		if tc.want == nil && got != filepath.Join(realRoot, tc.real) {
			t.Errorf("Resolve(%s) = %s, want %s", tc.path, got, filepath.Join(realRoot, tc.real))
		}
	}
}

func TestNoRootsRefusesAll(t *testing.T) {
	tr := newTree(t)
	r := newRoots(t, Config{})
	p := tr.in("file")
	_, err := r.Resolve(p)
	checkErr(t, "Resolve", err, ErrOutsideRoots)
	_, err = r.Stat(p)
	checkErr(t, "Stat", err, ErrOutsideRoots)
	_, err = r.List(tr.root)
	checkErr(t, "List", err, ErrOutsideRoots)
	_, err = r.OpenRead(context.Background(), p, 0)
	checkErr(t, "OpenRead", err, ErrOutsideRoots)
	_, err = r.CreateWrite(context.Background(), p, WriteOpts{Size: 1})
	checkErr(t, "CreateWrite", err, ErrOutsideRoots)
	if c := codeOf(err); c != "path_outside_roots" {
		t.Errorf("code %q", c)
	}
}

func TestLinkBetweenRoots(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	must(t, os.WriteFile(filepath.Join(b, "f"), []byte("in b"), 0o644))
	must(t, os.Symlink(b, filepath.Join(a, "to-b")))
	r := newRoots(t, Config{Roots: []string{a, b}})
	rd, err := r.OpenRead(context.Background(), filepath.Join(a, "to-b", "f"), 0)
	if err != nil {
		t.Fatalf("a link from one root into another: %v", err)
	}
	_ = rd.Close()
}

func TestNewRefusesBadRoots(t *testing.T) {
	file := filepath.Join(t.TempDir(), "f")
	must(t, os.WriteFile(file, nil, 0o644))
	for _, root := range []string{"relative", file, filepath.Join(file, "missing")} {
		if _, err := New(Config{Roots: []string{root}}); err == nil {
			t.Errorf("New accepted the root %q", root)
		}
	}
}

func TestCodesAreDistinct(t *testing.T) {
	seen := map[string]bool{}
	for _, e := range []*Error{ErrOutsideRoots, ErrBadPath, ErrNotFound, ErrIsDir, ErrNotDir, ErrNotRegular,
		ErrHardLink, ErrPermission, ErrTooLarge, ErrDigestMismatch, ErrSizeMismatch, ErrChanged, ErrBusy,
		ErrLimit, ErrBadRequest, ErrClosed, ErrIO, ErrOffsetMismatch} {
		if e.Code() == "" || seen[e.Code()] {
			t.Errorf("code %q empty or repeated", e.Code())
		}
		seen[e.Code()] = true
	}
	var err error = &OffsetMismatchError{Have: 7}
	if codeOf(err) != "offset_mismatch" || !isOffsetMismatch(err, 7) {
		t.Errorf("OffsetMismatchError: code %q", codeOf(err))
	}
}
