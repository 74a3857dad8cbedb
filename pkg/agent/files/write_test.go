package files

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// upload writes content to path in one attempt and commits it.
func upload(t testing.TB, r *Roots, path string, content []byte, opts WriteOpts) (Result, error) {
	t.Helper()
	opts.Size = int64(len(content))
	w, err := r.CreateWrite(context.Background(), path, opts)
	if err != nil {
		return Result{}, err
	}
	if _, err := w.Write(content); err != nil {
		_ = w.Abort()
		return Result{}, err
	}
	return w.Commit()
}

// temps lists the upload temporary files in dir.
func temps(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, ".*.cm-upload-*"))
	must(t, err)
	return m
}

func TestUpload(t *testing.T) {
	tr := newTree(t)
	r := newRoots(t, Config{Roots: []string{tr.root}})
	content := []byte("#!/bin/sh\necho uploaded\n")
	for _, tc := range []struct {
		name string
		path string
		mode os.FileMode
		want os.FileMode
	}{
		{"new, with a mode", tr.in("dir/tool"), 0o750, 0o750},
		{"new, no mode", tr.in("dir/plain"), 0, 0o644},
		{"replacing, mode kept", tr.in("file"), 0, 0o640},
		{"through a link inside", tr.in("in-link"), 0o600, 0o600},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := upload(t, r, tc.path, content, WriteOpts{Mode: tc.mode, ExpectSHA256: digest(content)})
			if err != nil || res.SHA256 != digest(content) || res.Size != int64(len(content)) {
				t.Fatalf("upload = %+v, %v", res, err)
			}
			real, _ := r.Resolve(tc.path)
			got, err := os.ReadFile(real)
			st, _ := os.Lstat(real)
			if err != nil || !bytes.Equal(got, content) || st.Mode().Perm() != tc.want || !st.Mode().IsRegular() {
				t.Errorf("destination %q mode %v, %v; want mode %v", got, st.Mode(), err, tc.want)
			}
			if left := temps(t, filepath.Dir(real)); len(left) != 0 {
				t.Errorf("temporary files left: %q", left)
			}
		})
	}
	if fi, _ := os.Lstat(tr.in("in-link")); fi.Mode()&os.ModeSymlink == 0 {
		t.Error("the upload through a link replaced the link instead of its target")
	}
}

func TestUploadRefused(t *testing.T) {
	tr := newTree(t)
	r := newRoots(t, Config{Roots: []string{tr.root}, MaxTransferSize: 100})
	for _, tc := range []struct {
		path string
		opts WriteOpts
		want error
	}{
		{tr.in("dir"), WriteOpts{Size: 1}, ErrIsDir},
		{tr.root, WriteOpts{Size: 1}, ErrIsDir},
		{tr.in("no-dir/f"), WriteOpts{Size: 1}, ErrNotFound},
		{tr.in("esc-dir/f"), WriteOpts{Size: 1}, ErrOutsideRoots},
		{tr.in("esc-file"), WriteOpts{Size: 1}, ErrOutsideRoots},
		{tr.in("../outside/f"), WriteOpts{Size: 1}, ErrOutsideRoots},
		{tr.in("f"), WriteOpts{Size: 101}, ErrTooLarge},
		{tr.in("f"), WriteOpts{Size: -1}, ErrBadRequest},
		{tr.in("f"), WriteOpts{Size: 5, Offset: 6}, ErrBadRequest},
		{tr.in("f"), WriteOpts{Size: 1, Mode: 0o4755}, ErrBadRequest},
		{tr.in("f"), WriteOpts{Size: 1, ExpectSHA256: "abc"}, ErrBadRequest},
		{tr.in("f"), WriteOpts{Size: 1, ExpectSHA256: strings.ToUpper(digest(nil))}, ErrBadRequest},
	} {
		_, err := r.CreateWrite(context.Background(), tc.path, tc.opts)
		checkErr(t, "CreateWrite("+tc.path+")", err, tc.want)
	}
	if secret, _ := os.ReadFile(filepath.Join(tr.outside, "secret")); string(secret) != "secret" {
		t.Errorf("outside file changed: %q", secret)
	}
}

func TestUploadBeyondDeclaredSize(t *testing.T) {
	tr := newTree(t)
	r := newRoots(t, Config{Roots: []string{tr.root}})
	w, err := r.CreateWrite(context.Background(), tr.in("f"), WriteOpts{Size: 4})
	must(t, err)
	defer func() { _ = w.Abort() }()
	_, err = w.Write([]byte("12345"))
	checkErr(t, "writing 5 of 4 bytes", err, ErrTooLarge)
	_, err = w.Write([]byte("12"))
	must(t, err)
	_, err = w.Commit()
	checkErr(t, "commit of 2 of 4 bytes", err, ErrSizeMismatch)
	_, err = w.Write([]byte("34"))
	must(t, err)
	res, err := w.Commit()
	if err != nil || res.SHA256 != digest([]byte("1234")) {
		t.Errorf("commit after completing: %+v, %v", res, err)
	}
	_, err = w.Write([]byte("x"))
	checkErr(t, "write after commit", err, ErrClosed)
}

func TestDigestMismatchLeavesDestination(t *testing.T) {
	tr := newTree(t)
	r := newRoots(t, Config{Roots: []string{tr.root}})
	sent := []byte("the content as sent")
	corrupted := bytes.Clone(sent)
	corrupted[4] ^= 0x20 // a flipped bit on the way
	res, err := upload(t, r, tr.in("file"), corrupted, WriteOpts{ExpectSHA256: digest(sent)})
	checkErr(t, "commit of a corrupted upload", err, ErrDigestMismatch)
	if res.SHA256 != digest(corrupted) {
		t.Errorf("the answer carries %q, want the actual digest", res.SHA256)
	}
	if got, _ := os.ReadFile(tr.in("file")); string(got) != "hello, world" {
		t.Errorf("destination changed to %q", got)
	}
	if left := temps(t, tr.root); len(left) != 0 {
		t.Errorf("temporary files left: %q", left)
	}
}
