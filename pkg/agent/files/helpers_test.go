package files

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// tree is a root and a directory outside it, with links between them:
//
//	root/file            "hello, world"
//	root/dir/inner       "inner"
//	root/in-link      -> file (relative, inside)
//	root/in-abs       -> root/file (absolute, inside)
//	root/esc-file     -> outside/secret
//	root/esc-dir      -> outside
//	root/dir/esc-up   -> ../../outside/secret
//	root/dangling     -> missing
//	root/hard            hard link of outside/secret
//	outside/secret       "secret"
type tree struct {
	root, outside string
}

func newTree(t *testing.T) tree {
	t.Helper()
	base := t.TempDir()
	tr := tree{root: filepath.Join(base, "root"), outside: filepath.Join(base, "outside")}
	must(t, os.MkdirAll(filepath.Join(tr.root, "dir"), 0o755))
	must(t, os.MkdirAll(tr.outside, 0o755))
	must(t, os.WriteFile(filepath.Join(tr.root, "file"), []byte("hello, world"), 0o640))
	must(t, os.WriteFile(filepath.Join(tr.root, "dir", "inner"), []byte("inner"), 0o644))
	must(t, os.WriteFile(filepath.Join(tr.outside, "secret"), []byte("secret"), 0o600))
	for link, to := range map[string]string{
		"in-link":    "file",
		"in-abs":     filepath.Join(tr.root, "file"),
		"esc-file":   filepath.Join(tr.outside, "secret"),
		"esc-dir":    tr.outside,
		"dir/esc-up": "../../outside/secret",
		"dangling":   "missing",
	} {
		must(t, os.Symlink(to, filepath.Join(tr.root, link)))
	}
	must(t, os.Link(filepath.Join(tr.outside, "secret"), filepath.Join(tr.root, "hard")))
	return tr
}

// in is the path of rel below the root.
func (tr tree) in(rel string) string { return filepath.Join(tr.root, rel) }

func newRoots(t *testing.T, cfg Config) *Roots {
	t.Helper()
	r, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func digest(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// checkErr fails unless err matches want (nil: no error).
func checkErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if want == nil && err != nil || want != nil && !errors.Is(err, want) {
		t.Errorf("%s: error %v, want %v", what, err, want)
	}
}

// codeOf is the stable code of err, "" if it has none.
func codeOf(err error) string {
	var c interface{ Code() string }
	if errors.As(err, &c) {
		return c.Code()
	}
	return ""
}

// isOffsetMismatch reports whether err is an offset mismatch carrying have.
func isOffsetMismatch(err error, have int64) bool {
	var om *OffsetMismatchError
	return errors.As(err, &om) && om.Have == have && errors.Is(err, ErrOffsetMismatch)
}
