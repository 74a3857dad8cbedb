package files

import (
	"bytes"
	"context"
	"os"
	"testing"
)

// crash ends w as the agent's death would: its file is closed (releasing
// the lock) without a sync or any bookkeeping of its Roots.
func crash(w *Writer) { _ = w.f.Close() }

func TestUploadResumesAfterCrash(t *testing.T) {
	tr := newTree(t)
	cfg := Config{Roots: []string{tr.root}}
	content := bytes.Repeat([]byte("resumable "), 300000) // 3 MB
	half := int64(len(content) / 2)
	opts := WriteOpts{Size: int64(len(content)), Mode: 0o600, ExpectSHA256: digest(content)}
	ctx := context.Background()

	w, err := newRoots(t, cfg).CreateWrite(ctx, tr.in("big"), opts)
	must(t, err)
	_, err = w.Write(content[:half])
	must(t, err)
	crash(w)

	r := newRoots(t, cfg) // the restarted agent
	for _, offset := range []int64{0, half - 1, half + 1} {
		o := opts
		o.Offset = offset
		_, err := r.CreateWrite(ctx, tr.in("big"), o)
		if !isOffsetMismatch(err, half) {
			t.Errorf("resume at %d: %v, want an offset mismatch with %d", offset, err, half)
		}
	}
	o := opts
	o.Offset = half
	w, err = r.CreateWrite(ctx, tr.in("big"), o)
	must(t, err)
	if w.Offset() != half {
		t.Fatalf("Offset %d, want %d", w.Offset(), half)
	}
	_, err = w.Write(content[half:])
	must(t, err)
	res, err := w.Commit()
	if err != nil || res.SHA256 != digest(content) {
		t.Fatalf("commit of the resumed upload: %+v, %v", res, err)
	}
	if got, _ := os.ReadFile(tr.in("big")); !bytes.Equal(got, content) {
		t.Errorf("content differs (%d bytes)", len(got))
	}
}

func TestUploadCloseKeepsTempForResume(t *testing.T) {
	tr := newTree(t)
	r := newRoots(t, Config{Roots: []string{tr.root}})
	ctx := context.Background()
	opts := WriteOpts{Size: 6}
	w, err := r.CreateWrite(ctx, tr.in("f"), opts)
	must(t, err)
	_, err = w.Write([]byte("abc"))
	must(t, err)
	must(t, w.Close())
	must(t, w.Close())
	if _, err := os.Stat(tr.in("f")); !os.IsNotExist(err) {
		t.Errorf("destination exists before the commit: %v", err)
	}
	other := WriteOpts{Size: 6, ExpectSHA256: digest([]byte("other!"))}
	if _, err := upload(t, r, tr.in("g"), []byte("other!"), other); err != nil {
		t.Errorf("another upload: %v", err)
	}
	opts.Offset = 3
	w, err = r.CreateWrite(ctx, tr.in("f"), opts)
	must(t, err)
	_, err = w.Write([]byte("def"))
	must(t, err)
	if res, err := w.Commit(); err != nil || res.SHA256 != digest([]byte("abcdef")) {
		t.Errorf("commit: %+v, %v", res, err)
	}
}

func TestAbortRemovesTemp(t *testing.T) {
	tr := newTree(t)
	r := newRoots(t, Config{Roots: []string{tr.root}})
	w, err := r.CreateWrite(context.Background(), tr.in("f"), WriteOpts{Size: 6})
	must(t, err)
	_, err = w.Write([]byte("abc"))
	must(t, err)
	must(t, w.Abort())
	if left := temps(t, tr.root); len(left) != 0 {
		t.Errorf("temporary files left: %q", left)
	}
	_, err = r.CreateWrite(context.Background(), tr.in("f"), WriteOpts{Size: 6, Offset: 3})
	if !isOffsetMismatch(err, 0) {
		t.Errorf("resume after Abort: %v, want an offset mismatch with 0", err)
	}
}

func TestConcurrentUploadBusy(t *testing.T) {
	tr := newTree(t)
	cfg := Config{Roots: []string{tr.root}}
	r := newRoots(t, cfg)
	ctx := context.Background()
	w, err := r.CreateWrite(ctx, tr.in("file"), WriteOpts{Size: 3})
	must(t, err)
	for _, p := range []string{tr.in("file"), tr.in("in-link"), tr.in("dir/../file")} {
		_, err := r.CreateWrite(ctx, p, WriteOpts{Size: 5})
		checkErr(t, "second upload to "+p, err, ErrBusy)
	}
	// The same upload from another process finds the temporary file locked.
	_, err = newRoots(t, cfg).CreateWrite(ctx, tr.in("file"), WriteOpts{Size: 3})
	checkErr(t, "the same upload from another agent", err, ErrBusy)
	if _, err := upload(t, r, tr.in("dir/inner"), []byte("x"), WriteOpts{}); err != nil {
		t.Errorf("an upload to another path: %v", err)
	}
	must(t, w.Abort())
	if _, err := upload(t, r, tr.in("file"), []byte("new"), WriteOpts{}); err != nil {
		t.Errorf("upload after the first ended: %v", err)
	}
}
