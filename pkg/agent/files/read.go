package files

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"sync"
	"time"
)

// chunk is the buffer size for hashing a prefix.
const chunk = 1 << 20

// Reader streams one file from an offset, computing the sha-256 of the
// whole file. One goroutine may Read; Close may be called from any
// goroutine, any number of times.
type Reader struct {
	f       *os.File
	h       hash.Hash
	size    int64
	mode    fs.FileMode
	modTime time.Time
	left    int64  // bytes still to read
	sum     string // the digest, once the whole file was read
	release func()
	once    sync.Once
}

// OpenRead opens the regular file path for reading from offset (0 for the
// whole file). Before it returns it hashes the offset bytes before the
// position, reading them from the file, so that [Reader.SHA256] is the
// digest of the whole file even for a resumed download; ctx bounds that.
// Errors: those of [Roots.Resolve]; ErrIsDir, ErrNotRegular, ErrHardLink,
// ErrTooLarge (size above [Config.MaxTransferSize]), ErrLimit,
// [*OffsetMismatchError] (with the file's size) for an offset outside
// 0..size, ErrNotFound, ErrPermission.
func (r *Roots) OpenRead(ctx context.Context, path string, offset int64) (*Reader, error) {
	t, err := r.resolve(path)
	if err != nil {
		return nil, err
	}
	release, err := r.acquire("")
	if err != nil {
		return nil, err
	}
	rd, err := r.openRead(ctx, t, path, offset)
	if err != nil {
		release()
		return nil, err
	}
	rd.release = release
	return rd, nil
}

func (r *Roots) openRead(ctx context.Context, t target, path string, offset int64) (*Reader, error) {
	f, err := t.root.dir.Open(t.rel)
	if err != nil {
		return nil, fsError(path, err)
	}
	fi, err := f.Stat()
	if err != nil {
		err = fsError(path, err)
	} else {
		err = r.checkReadable(path, fi, offset)
	}
	if err != nil {
		_ = f.Close()
		return nil, err
	}
	rd := &Reader{f: f, h: sha256.New(), size: fi.Size(), mode: fi.Mode(), modTime: fi.ModTime(), left: fi.Size() - offset}
	if err := hashPrefix(ctx, f, rd.h, offset); err != nil {
		_ = f.Close()
		return nil, err
	}
	return rd, nil
}

// checkReadable refuses what a download must not read.
func (r *Roots) checkReadable(path string, fi fs.FileInfo, offset int64) error {
	switch {
	case fi.IsDir():
		return fmt.Errorf("%w: %s", ErrIsDir, path)
	case !fi.Mode().IsRegular():
		return fmt.Errorf("%w: %s", ErrNotRegular, path)
	case links(fi) > 1:
		return fmt.Errorf("%w: %s has %d", ErrHardLink, path, links(fi))
	case fi.Size() > r.cfg.MaxTransferSize:
		return fmt.Errorf("%w: %s has %d bytes, the limit is %d", ErrTooLarge, path, fi.Size(), r.cfg.MaxTransferSize)
	case offset < 0 || offset > fi.Size():
		return &OffsetMismatchError{Have: fi.Size()}
	}
	return nil
}

// hashPrefix feeds the next n bytes of f to h, checking ctx between
// chunks; a file shorter than n is ErrChanged.
func hashPrefix(ctx context.Context, f *os.File, h hash.Hash, n int64) error {
	buf := make([]byte, min(n, chunk))
	for n > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		k, err := io.ReadFull(f, buf[:min(n, int64(len(buf)))])
		h.Write(buf[:k])
		n -= int64(k)
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return fmt.Errorf("%w: %s is shorter than %d bytes", ErrChanged, f.Name(), n)
		}
		if err != nil {
			return fsError(f.Name(), err)
		}
	}
	return nil
}

// Size returns the file's size when it was opened; the reader delivers
// exactly Size minus the offset bytes.
func (rd *Reader) Size() int64 { return rd.size }

// Mode returns the file's type and permission bits.
func (rd *Reader) Mode() fs.FileMode { return rd.mode }

// ModTime returns the file's modification time when it was opened.
func (rd *Reader) ModTime() time.Time { return rd.modTime }

// Read reads the file's next bytes. At the end it checks that the file
// kept its size and modification time and returns io.EOF, or an error
// wrapping ErrChanged (also when the file got shorter while being read).
func (rd *Reader) Read(p []byte) (int, error) {
	if rd.left == 0 {
		return 0, rd.finish()
	}
	if int64(len(p)) > rd.left {
		p = p[:rd.left]
	}
	n, err := rd.f.Read(p)
	rd.h.Write(p[:n])
	rd.left -= int64(n)
	switch {
	case errors.Is(err, io.EOF):
		return n, fmt.Errorf("%w: %s got shorter", ErrChanged, rd.f.Name())
	case errors.Is(err, os.ErrClosed):
		return n, ErrClosed
	case err != nil:
		return n, fsError(rd.f.Name(), err)
	}
	return n, nil
}

// finish checks the file at the end of the read and computes the digest.
func (rd *Reader) finish() error {
	fi, err := rd.f.Stat()
	if err != nil {
		return fsError(rd.f.Name(), err)
	}
	if fi.Size() != rd.size || !fi.ModTime().Equal(rd.modTime) {
		return fmt.Errorf("%w: %s", ErrChanged, rd.f.Name())
	}
	if rd.sum == "" {
		rd.sum = hex.EncodeToString(rd.h.Sum(nil))
	}
	return io.EOF
}

// SHA256 returns the lower-case hex sha-256 of the whole file once Read has
// returned io.EOF, and "" before.
func (rd *Reader) SHA256() string { return rd.sum }

// Close closes the file and frees the transfer slot. It is idempotent and
// safe to call concurrently with Read (which then fails).
func (rd *Reader) Close() error {
	var err error
	rd.once.Do(func() {
		err = rd.f.Close()
		rd.release()
	})
	return err
}
