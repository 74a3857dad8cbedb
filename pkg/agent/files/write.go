package files

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
)

// defaultMode is the permission of a new file uploaded without a mode.
const defaultMode fs.FileMode = 0o644

// WriteOpts describes an upload.
type WriteOpts struct {
	// Offset is where this attempt starts: 0 for a new upload, or the
	// length of the pending temporary file to resume (see
	// [*OffsetMismatchError]).
	Offset int64
	// Size is the whole content's length in bytes, 0..[Config.MaxTransferSize].
	Size int64
	// Mode holds the permission bits (at most 0o777) the file gets; zero
	// keeps those of the file it replaces, or 0o644 for a new file.
	Mode fs.FileMode
	// ExpectSHA256, if set, is the lower-case hex sha-256 the whole
	// content must have for Commit to succeed.
	ExpectSHA256 string
}

// Result is what a committed upload wrote.
type Result struct {
	Size   int64
	SHA256 string // lower-case hex, of the whole content
}

// Writer is an upload in progress, from [Roots.CreateWrite]. One goroutine
// uses it at a time.
type Writer struct {
	t       target
	tmp     string // rel path of the temporary file in t.root
	f       *os.File
	h       hash.Hash
	opts    WriteOpts
	written int64 // bytes in the temporary file
	release func()
	once    sync.Once
	closed  bool
}

// CreateWrite starts or resumes the upload of path. The content goes to
// ".<name>.cm-upload-<id>" in the destination's directory (id derived from
// Size and ExpectSHA256), which survives an interruption: opts.Offset must
// be its current length (0 when there is none), else the error is an
// [*OffsetMismatchError] carrying that length. CreateWrite hashes the bytes
// already there (ctx bounds that) so that the digest covers the whole
// content. Errors, besides those of [Roots.Resolve]: ErrBadRequest,
// ErrTooLarge, ErrNotFound (no parent directory), ErrIsDir, ErrNotRegular,
// ErrBusy (another upload of path, in this process or another), ErrLimit.
func (r *Roots) CreateWrite(ctx context.Context, path string, opts WriteOpts) (*Writer, error) {
	if err := r.checkOpts(opts); err != nil {
		return nil, err
	}
	t, mode, err := r.destination(path)
	if err != nil {
		return nil, err
	}
	if opts.Mode == 0 {
		opts.Mode = mode
	}
	release, err := r.acquire(t.abs)
	if err != nil {
		return nil, err
	}
	w := &Writer{t: t, h: sha256.New(), opts: opts, release: release, tmp: tempName(t.rel, opts)}
	if err := w.open(ctx); err != nil {
		w.drop()
		return nil, err
	}
	return w, nil
}

// checkOpts refuses invalid options.
func (r *Roots) checkOpts(o WriteOpts) error {
	switch {
	case o.Size < 0 || o.Offset < 0 || o.Offset > o.Size:
		return fmt.Errorf("%w: size %d, offset %d", ErrBadRequest, o.Size, o.Offset)
	case o.Size > r.cfg.MaxTransferSize:
		return fmt.Errorf("%w: %d bytes, the limit is %d", ErrTooLarge, o.Size, r.cfg.MaxTransferSize)
	case o.Mode&^fs.ModePerm != 0:
		return fmt.Errorf("%w: mode %v has bits other than the permissions", ErrBadRequest, o.Mode)
	case o.ExpectSHA256 != "" && !isHexDigest(o.ExpectSHA256):
		return fmt.Errorf("%w: expected sha-256 must be 64 lower-case hex digits", ErrBadRequest)
	}
	return nil
}

func isHexDigest(s string) bool {
	if len(s) != 2*sha256.Size {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// destination resolves an upload's path and returns the mode to keep.
func (r *Roots) destination(path string) (target, fs.FileMode, error) {
	t, err := r.resolve(path)
	if err != nil {
		return t, 0, err
	}
	if t.rel == "." {
		return t, 0, fmt.Errorf("%w: %s", ErrIsDir, path)
	}
	if fi, err := t.root.dir.Stat(filepath.Dir(t.rel)); err != nil {
		return t, 0, fsError(path, err)
	} else if !fi.IsDir() {
		return t, 0, fmt.Errorf("%w: the parent of %s is not a directory", ErrNotFound, path)
	}
	fi, err := t.root.dir.Stat(t.rel)
	switch {
	case os.IsNotExist(err):
		return t, defaultMode, nil
	case err != nil:
		return t, 0, fsError(path, err)
	case fi.IsDir():
		return t, 0, fmt.Errorf("%w: %s", ErrIsDir, path)
	case !fi.Mode().IsRegular():
		return t, 0, fmt.Errorf("%w: %s", ErrNotRegular, path)
	}
	return t, fi.Mode().Perm(), nil
}

// tempName is the temporary file of an upload of rel with opts.
func tempName(rel string, o WriteOpts) string {
	id := sha256.Sum256(fmt.Appendf(nil, "%d\x00%s", o.Size, o.ExpectSHA256))
	return filepath.Join(filepath.Dir(rel), "."+filepath.Base(rel)+".cm-upload-"+hex.EncodeToString(id[:8]))
}

// open opens (or creates) and locks the temporary file, checks opts.Offset
// against its length and hashes what it holds.
func (w *Writer) open(ctx context.Context) error {
	dir := w.t.root.dir
	f, err := dir.OpenFile(w.tmp, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fsError(w.tmp, err)
	}
	w.f = f
	if ok, err := lock(f); err != nil {
		return fsError(w.tmp, err)
	} else if !ok {
		return fmt.Errorf("%w: %s (another process)", ErrBusy, w.t.abs)
	}
	fi, err := f.Stat()
	lfi, lerr := dir.Lstat(w.tmp)
	if err != nil || lerr != nil || !fi.Mode().IsRegular() || links(fi) != 1 || !os.SameFile(fi, lfi) {
		return fmt.Errorf("%w: the temporary file %s is not a plain file of its own", ErrNotRegular, w.tmp)
	}
	have := fi.Size()
	if have > w.opts.Size { // not this upload's: start again
		if err := f.Truncate(0); err != nil {
			return fsError(w.tmp, err)
		}
		have = 0
	}
	if w.opts.Offset != have {
		if have == 0 {
			_ = dir.Remove(w.tmp)
		}
		return &OffsetMismatchError{Have: have}
	}
	if err := hashPrefix(ctx, f, w.h, have); err != nil {
		return err
	}
	w.written = have
	return nil
}

// Offset returns how many bytes of the content the temporary file holds.
func (w *Writer) Offset() int64 { return w.written }

// Write appends p to the content. Writing beyond the declared size writes
// nothing and returns an error wrapping ErrTooLarge.
func (w *Writer) Write(p []byte) (int, error) {
	if w.closed {
		return 0, ErrClosed
	}
	if w.written+int64(len(p)) > w.opts.Size {
		return 0, fmt.Errorf("%w: more than the declared %d bytes", ErrTooLarge, w.opts.Size)
	}
	n, err := w.f.Write(p)
	w.h.Write(p[:n])
	w.written += int64(n)
	if err != nil {
		return n, fsError(w.tmp, err)
	}
	return n, nil
}

// Commit ends the upload. With fewer bytes than declared it returns an
// error wrapping ErrSizeMismatch and the Writer stays usable. With a digest
// other than the expected one it removes the temporary file, leaves the
// destination untouched and returns the actual digest with an error
// wrapping ErrDigestMismatch. Otherwise it syncs the content, sets the
// mode, renames the file over the destination and syncs the directory;
// the Writer is then closed. On a failure of the file system the temporary
// file is kept for a retry.
func (w *Writer) Commit() (Result, error) {
	if w.closed {
		return Result{}, ErrClosed
	}
	if w.written != w.opts.Size {
		return Result{}, fmt.Errorf("%w: %d of %d bytes", ErrSizeMismatch, w.written, w.opts.Size)
	}
	res := Result{Size: w.written, SHA256: hex.EncodeToString(w.h.Sum(nil))}
	if w.opts.ExpectSHA256 != "" && res.SHA256 != w.opts.ExpectSHA256 {
		_ = w.Abort()
		return res, fmt.Errorf("%w: got %s, expected %s", ErrDigestMismatch, res.SHA256, w.opts.ExpectSHA256)
	}
	if err := w.install(); err != nil {
		_ = w.Close()
		return res, err
	}
	w.drop()
	return res, nil
}

// install makes the temporary file the destination, durably.
func (w *Writer) install() error {
	dir := w.t.root.dir
	if err := w.f.Sync(); err != nil {
		return fsError(w.tmp, err)
	}
	if err := w.f.Chmod(w.opts.Mode); err != nil {
		return fsError(w.tmp, err)
	}
	if err := dir.Rename(w.tmp, w.t.rel); err != nil { // still locked
		return fsError(w.t.abs, err)
	}
	if d, err := dir.Open(filepath.Dir(w.t.rel)); err == nil {
		_ = d.Sync() // best effort: some file systems refuse to sync a directory
		_ = d.Close()
	}
	return nil
}

// Close ends the attempt without committing: it syncs and keeps the
// temporary file so that a later [Roots.CreateWrite] with Offset equal to
// [Writer.Offset] resumes it. After Commit or Abort it does nothing. It is
// idempotent.
func (w *Writer) Close() error {
	if w.closed {
		return nil
	}
	err := w.f.Sync()
	w.drop()
	if err != nil {
		return fsError(w.tmp, err)
	}
	return nil
}

// Abort ends the upload and removes its temporary file; the destination
// is untouched. After Commit or Close it does nothing.
func (w *Writer) Abort() error {
	if w.closed {
		return nil
	}
	err := w.t.root.dir.Remove(w.tmp) // while still locked
	w.drop()
	if err != nil {
		return fsError(w.tmp, err)
	}
	return nil
}

// drop closes the file and frees the slot and the destination.
func (w *Writer) drop() {
	w.once.Do(func() {
		w.closed = true
		if w.f != nil {
			_ = w.f.Close()
		}
		w.release()
	})
}
