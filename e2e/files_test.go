package e2e

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// fileURL is the files route of f's agent for path, with extra query.
func (f *sessionFixture) fileURL(route, path, extra string) string {
	return f.base + "/api/clients/" + f.id + "/files" + route + "?path=" + url.QueryEscape(path) + extra
}

// upload PUTs body to path with the given headers and returns the status,
// the answer's body and headers.
func upload(t *testing.T, target string, body io.Reader, size int64, hdr map[string]string) (int, []byte, http.Header) {
	t.Helper()
	code, b, h := uploadQuiet(target, body, size, hdr)
	if code == 0 {
		t.Fatalf("PUT %s failed", target)
	}
	return code, b, h
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestFilesEndToEnd uploads and downloads through the real binaries:
// digest checked both ways, mode kept, a range resumed, stat and list.
func TestFilesEndToEnd(t *testing.T) {
	t.Parallel()
	share := t.TempDir()
	f := startSessionFixture(t, nil, "--files-root", share)
	data := randomBytes(t, 3<<20+17)
	dest := filepath.Join(share, "blob.bin")
	code, body, hdr := upload(t, f.fileURL("", dest, "&mode=0600"), bytes.NewReader(data), int64(len(data)),
		map[string]string{"X-Content-SHA256": sha(data)})
	if code != http.StatusCreated || hdr.Get("X-Content-SHA256") != sha(data) || !strings.Contains(string(body), sha(data)) {
		t.Fatalf("upload = %d %s %v", code, body, hdr)
	}
	got, err := os.ReadFile(dest)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("file on the agent: %v, %d bytes, equal %v", err, len(got), bytes.Equal(got, data))
	}
	if fi, _ := os.Stat(dest); fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode = %v, want 0600", fi.Mode().Perm())
	}
	checkDownload(t, f, dest, data, 0)
	checkDownload(t, f, dest, data, 1<<20+5)
	code, sbody := get(f.fileURL("/stat", dest, ""))
	if code != http.StatusOK || !strings.Contains(sbody, `"size":`+strconv.Itoa(len(data))) {
		t.Fatalf("stat = %d %s", code, sbody)
	}
	code, lbody := get(f.fileURL("/list", share, ""))
	if code != http.StatusOK || !strings.Contains(lbody, `"blob.bin"`) {
		t.Fatalf("list = %d %s", code, lbody)
	}
}

// checkDownload GETs path from offset (a Range request when > 0) and
// compares the bytes and the whole file's digest in the trailer.
func checkDownload(t *testing.T, f *sessionFixture, path string, data []byte, offset int) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, f.fileURL("", path, ""), nil)
	want := http.StatusOK
	if offset > 0 {
		req.Header.Set("Range", "bytes="+strconv.Itoa(offset)+"-")
		want = http.StatusPartialContent
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	got, err := io.ReadAll(res.Body)
	if err != nil || res.StatusCode != want || !bytes.Equal(got, data[offset:]) {
		t.Fatalf("download from %d = %d %v, %d bytes, equal %v", offset, res.StatusCode, err, len(got), bytes.Equal(got, data[offset:]))
	}
	if d := res.Trailer.Get("X-Content-SHA256"); d != sha(data) {
		t.Fatalf("download trailer X-Content-SHA256 = %q, want %s", d, sha(data))
	}
}

// TestFilesRefused covers the files' bad input with real binaries: paths
// outside the roots (absolute, traversal, through a symlink), a digest
// that does not match (a corrupted chunk), a second upload to the same
// path at once, a transfer over the limit, an agent without roots. Each
// answer is precise, nothing is written, and the agent stays connected.
func TestFilesRefused(t *testing.T) {
	t.Parallel()
	share := t.TempDir()
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("s3cret"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(share, "escape")); err != nil {
		t.Fatal(err)
	}
	f := startSessionFixture(t, nil, "--files-root", share, "--files-max-size", "1048576")
	data := randomBytes(t, 64<<10)
	corrupt := bytes.Clone(data)
	corrupt[40000] ^= 0xff
	cases := []struct {
		name, method, path string
		body               []byte
		hdr                map[string]string
		status             int
		code               string
	}{
		{"outside the roots", "GET", filepath.Join(outside, "secret"), nil, nil, http.StatusForbidden, "path_outside_roots"},
		{"traversal", "GET", share + "/../" + filepath.Base(outside) + "/secret", nil, nil, http.StatusForbidden, "path_outside_roots"},
		{"through a symlink", "GET", filepath.Join(share, "escape", "secret"), nil, nil, http.StatusForbidden, "path_outside_roots"},
		{"upload through a symlink", "PUT", filepath.Join(share, "escape", "new"), data, nil, http.StatusForbidden, "path_outside_roots"},
		{"relative path", "GET", "secret", nil, nil, http.StatusBadRequest, "invalid_query"},
		{"missing file", "GET", filepath.Join(share, "none"), nil, nil, http.StatusNotFound, "file_not_found"},
		{"corrupted chunk", "PUT", filepath.Join(share, "c.bin"), corrupt, map[string]string{"X-Content-SHA256": sha(data)},
			http.StatusUnprocessableEntity, "digest_mismatch"},
		{"over the agent's limit", "PUT", filepath.Join(share, "big.bin"), make([]byte, 1<<20+1), nil,
			http.StatusRequestEntityTooLarge, "transfer_too_large"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var code int
			var body []byte
			if c.method == "PUT" {
				code, body, _ = upload(t, f.fileURL("", c.path, ""), bytes.NewReader(c.body), int64(len(c.body)), c.hdr)
			} else {
				var s string
				code, s = get(f.fileURL("", c.path, ""))
				body = []byte(s)
			}
			var e struct{ Error struct{ Code string } }
			if code != c.status || json.Unmarshal(body, &e) != nil || e.Error.Code != c.code {
				t.Fatalf("%s %s = %d %s, want %d %s", c.method, c.path, code, body, c.status, c.code)
			}
		})
	}
	for _, name := range []string{"c.bin", "big.bin"} {
		if _, err := os.Stat(filepath.Join(share, name)); !os.IsNotExist(err) {
			t.Errorf("%s exists after a refused upload: %v", name, err)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(outside, "secret")); string(b) != "s3cret" {
		t.Errorf("file outside the roots changed: %q", b)
	}
	if code, body := get(f.base + "/api/clients?status=online"); code != http.StatusOK || !strings.Contains(body, f.id) {
		t.Fatalf("agent not online after the refusals: %d %s", code, body)
	}
}

// pausingReader serves data and stops at pauseAt: it signals paused and
// then fails the read once released, cutting the upload short.
type pausingReader struct {
	data    []byte
	off     int
	pauseAt int
	paused  chan struct{}
	release chan struct{}
}

func (r *pausingReader) Read(p []byte) (int, error) {
	if r.off >= r.pauseAt && r.paused != nil {
		close(r.paused)
		r.paused = nil
		<-r.release
		return 0, io.ErrUnexpectedEOF
	}
	end := min(len(r.data), r.off+len(p), max(r.pauseAt, r.off+1))
	n := copy(p, r.data[r.off:end])
	r.off += n
	return n, nil
}

// TestUploadResumesAfterServerKill kills the client manager with SIGKILL
// half-way through an upload; after the restart the agent reports how much
// it holds (Upload-Offset), the rest is sent with Content-Range, and the
// file ends with the right digest. CM_RESUME_BYTES sets the size (default
// 64 MiB; docs/performance.md used 1 GiB).
func TestUploadResumesAfterServerKill(t *testing.T) {
	t.Parallel()
	size := 64 << 20
	if v, err := strconv.Atoi(os.Getenv("CM_RESUME_BYTES")); err == nil && v > 0 {
		size = v
	}
	share := t.TempDir()
	f := startSessionFixture(t, nil, "--files-root", share, "--files-max-size", strconv.Itoa(size))
	data := randomBytes(t, size)
	dest, digest := filepath.Join(share, "resume.bin"), sha(data)
	paused, release := make(chan struct{}), make(chan struct{})
	r := &pausingReader{data: data, pauseAt: size / 2, paused: paused, release: release}
	done := make(chan int, 1)
	go func() {
		code, _, _ := uploadQuiet(f.fileURL("", dest, ""), r, int64(size), map[string]string{"X-Content-SHA256": digest})
		done <- code
	}()
	<-paused
	f.killServer(t)
	close(release)
	<-done
	waitOnline(t, f.base, 15*time.Second)
	total := strconv.Itoa(size)
	code, body, hdr := upload(t, f.fileURL("", dest, ""), http.NoBody, 0,
		map[string]string{"X-Content-SHA256": digest, "Content-Range": "bytes */" + total})
	offset, err := strconv.Atoi(hdr.Get("Upload-Offset"))
	if code != http.StatusConflict || err != nil || offset <= 0 || offset > size/2 {
		t.Fatalf("offset probe = %d %s Upload-Offset %q, want 409 with 0 < offset <= %d", code, body, hdr.Get("Upload-Offset"), size/2)
	}
	t.Logf("resume_offset=%d of %d (%.1f%%)", offset, size, 100*float64(offset)/float64(size))
	code, body, hdr = upload(t, f.fileURL("", dest, ""), bytes.NewReader(data[offset:]), int64(size-offset),
		map[string]string{"X-Content-SHA256": digest, "Content-Range": "bytes " + strconv.Itoa(offset) + "-" + strconv.Itoa(size-1) + "/" + total})
	if code != http.StatusCreated || hdr.Get("X-Content-SHA256") != digest {
		t.Fatalf("resumed upload = %d %s %v", code, body, hdr)
	}
	if got, err := os.ReadFile(dest); err != nil || sha(got) != digest {
		t.Fatalf("file after resume: %v, digest %s want %s", err, sha(got), digest)
	}
}

// uploadQuiet is upload for a goroutine: it reports failures as status 0.
func uploadQuiet(target string, body io.Reader, size int64, hdr map[string]string) (int, []byte, http.Header) {
	req, err := http.NewRequest(http.MethodPut, target, body)
	if err != nil {
		return 0, nil, nil
	}
	req.ContentLength = size
	req.Header.Set("Content-Type", "application/octet-stream")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, nil
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, b, res.Header
}
