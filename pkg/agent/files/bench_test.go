package files

import (
	"bytes"
	"context"
	"io"
	"path/filepath"
	"testing"
)

// benchSize is the file size of the transfer benchmarks.
const benchSize = 64 << 20

// BenchmarkUpload measures CreateWrite, Write in 256 KiB chunks and Commit
// (sha-256, fsync, rename) of a 64 MiB file.
func BenchmarkUpload(b *testing.B) {
	dir := b.TempDir()
	r, err := New(Config{Roots: []string{dir}})
	if err != nil {
		b.Fatal(err)
	}
	chunk := bytes.Repeat([]byte{'x'}, 256<<10)
	b.SetBytes(benchSize)
	for range b.N {
		w, err := r.CreateWrite(context.Background(), filepath.Join(dir, "up"), WriteOpts{Size: benchSize})
		if err != nil {
			b.Fatal(err)
		}
		for range benchSize / len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := w.Commit(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDownload measures OpenRead and reading a 64 MiB file to its end
// with its sha-256.
func BenchmarkDownload(b *testing.B) {
	dir := b.TempDir()
	r, err := New(Config{Roots: []string{dir}})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := upload(b, r, filepath.Join(dir, "f"), bytes.Repeat([]byte{'y'}, benchSize), WriteOpts{}); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(benchSize)
	for range b.N {
		rd, err := r.OpenRead(context.Background(), filepath.Join(dir, "f"), 0)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, rd); err != nil || rd.SHA256() == "" {
			b.Fatal(err)
		}
		_ = rd.Close()
	}
}
