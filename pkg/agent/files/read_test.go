package files

import (
	"bytes"
	"context"
	"io"
	"os"
	"testing"
)

// readAll reads rd to its end in small reads.
func readAll(rd *Reader) ([]byte, error) {
	var out bytes.Buffer
	_, err := io.CopyBuffer(&out, struct{ io.Reader }{rd}, make([]byte, 1000))
	return out.Bytes(), err
}

func TestOpenRead(t *testing.T) {
	tr := newTree(t)
	big := bytes.Repeat([]byte("0123456789abcdef"), 3<<16) // 3 MiB: prefixes span chunks
	must(t, os.WriteFile(tr.in("big"), big, 0o600))
	r := newRoots(t, Config{Roots: []string{tr.root}})
	for _, tc := range []struct {
		path   string
		offset int64
		whole  []byte
	}{
		{tr.in("file"), 0, []byte("hello, world")},
		{tr.in("file"), 7, []byte("hello, world")},
		{tr.in("file"), 12, []byte("hello, world")},
		{tr.in("in-link"), 0, []byte("hello, world")},
		{tr.in("big"), 0, big},
		{tr.in("big"), 3<<19 + 5, big},
	} {
		rd, err := r.OpenRead(context.Background(), tc.path, tc.offset)
		if err != nil {
			t.Fatalf("OpenRead(%s, %d): %v", tc.path, tc.offset, err)
		}
		got, err := readAll(rd)
		if err != nil || !bytes.Equal(got, tc.whole[tc.offset:]) {
			t.Errorf("OpenRead(%s, %d) read %d bytes, %v", tc.path, tc.offset, len(got), err)
		}
		if rd.SHA256() != digest(tc.whole) || rd.Size() != int64(len(tc.whole)) {
			t.Errorf("OpenRead(%s, %d): sha-256 %q size %d", tc.path, tc.offset, rd.SHA256(), rd.Size())
		}
		must(t, rd.Close())
		must(t, rd.Close())
	}
}

func TestOpenReadRefused(t *testing.T) {
	tr := newTree(t)
	r := newRoots(t, Config{Roots: []string{tr.root}, MaxTransferSize: 10})
	must(t, os.WriteFile(tr.in("small"), []byte("12345"), 0o644))
	for _, tc := range []struct {
		path   string
		offset int64
		want   error
	}{
		{tr.in("hard"), 0, ErrHardLink},
		{tr.in("dir"), 0, ErrIsDir},
		{tr.in("file"), 0, ErrTooLarge},
		{tr.in("esc-file"), 0, ErrOutsideRoots},
		{tr.in("esc-dir/secret"), 0, ErrOutsideRoots},
		{tr.in("dir/esc-up"), 0, ErrOutsideRoots},
		{tr.in("missing"), 0, ErrNotFound},
		{tr.in("small"), 6, ErrOffsetMismatch},
		{tr.in("small"), -1, ErrOffsetMismatch},
		{"/dev/null", 0, ErrOutsideRoots},
	} {
		_, err := r.OpenRead(context.Background(), tc.path, tc.offset)
		checkErr(t, "OpenRead("+tc.path+")", err, tc.want)
	}
	_, err := r.OpenRead(context.Background(), tr.in("small"), 9)
	if !isOffsetMismatch(err, 5) {
		t.Errorf("offset past the end: %v, want the size 5", err)
	}
	if rr := newRoots(t, Config{Roots: []string{"/dev"}}); rr != nil {
		_, err := rr.OpenRead(context.Background(), "/dev/null", 0)
		checkErr(t, "OpenRead(/dev/null)", err, ErrNotRegular)
	}
}

func TestReadDetectsChange(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(path string) error
	}{
		{"shrunk", func(p string) error { return os.Truncate(p, 3) }},
		{"grown", func(p string) error {
			f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
			if err == nil {
				_, err = f.WriteString("more")
				_ = f.Close()
			}
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := newTree(t)
			r := newRoots(t, Config{Roots: []string{tr.root}})
			rd, err := r.OpenRead(context.Background(), tr.in("file"), 0)
			must(t, err)
			defer func() { _ = rd.Close() }()
			must(t, tc.change(tr.in("file")))
			_, err = readAll(rd)
			checkErr(t, "read of a changed file", err, ErrChanged)
			if rd.SHA256() != "" {
				t.Errorf("a digest for a changed file: %s", rd.SHA256())
			}
		})
	}
}

func TestTransferLimit(t *testing.T) {
	tr := newTree(t)
	r := newRoots(t, Config{Roots: []string{tr.root}, MaxTransfers: 2})
	ctx := context.Background()
	a, err := r.OpenRead(ctx, tr.in("file"), 0)
	must(t, err)
	w, err := r.CreateWrite(ctx, tr.in("up"), WriteOpts{Size: 1})
	must(t, err)
	_, err = r.OpenRead(ctx, tr.in("file"), 0)
	checkErr(t, "third read", err, ErrLimit)
	_, err = r.CreateWrite(ctx, tr.in("up2"), WriteOpts{Size: 1})
	checkErr(t, "third write", err, ErrLimit)
	must(t, a.Close())
	must(t, w.Close())
	b, err := r.OpenRead(ctx, tr.in("file"), 0)
	checkErr(t, "read after the others closed", err, nil)
	if b != nil {
		_ = b.Close()
	}
}
