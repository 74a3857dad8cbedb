package agent

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/home-console/client-manager/pkg/agent/files"
	"github.com/home-console/client-manager/pkg/agent/terminal"
	"github.com/home-console/client-manager/pkg/agentproto"
	"github.com/home-console/client-manager/pkg/agentstream"
)

func shellTerminal() terminal.Config {
	return terminal.Config{Enabled: true, Shell: []string{"/bin/sh"}, KillGrace: 300 * time.Millisecond}
}

// streamHub is a fake hub whose welcome lists streams, with a small window
// so that flow control is exercised.
func streamHub(t *testing.T) *fakeHub {
	h := newFakeHub(t)
	h.welcome.Features = []string{agentproto.FeatureStreams}
	h.welcome.StreamWindowBytes = 64 << 10
	h.welcome.StreamChunkBytes = 16 << 10
	return h
}

// open opens a stream from the server's side.
func (c *hubConn) open(t *testing.T, open agentproto.StreamOpen) (*agentstream.Stream, agentproto.StreamOpened, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return c.mux.Open(ctx, open)
}

// closeCode is the code of a stream's abort, "" for another error.
func closeCode(err error) string {
	var ce *agentstream.CloseError
	if errors.As(err, &ce) {
		return ce.Close.Code
	}
	return ""
}

// filesAgent runs an agent with one files root and returns the root and
// the hub connection.
func filesAgent(t *testing.T) (string, *fakeHub, *hubConn) {
	root := t.TempDir()
	h := streamHub(t)
	startAgent(t, h, Config{Files: files.Config{Roots: []string{root}}})
	return root, h, h.next(t, 5*time.Second)
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{1})
	_, _ = r.Read(b)
	return b
}

func digest(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

func TestHelloFeatures(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want []string
	}{
		{"none", Config{}, []string{agentproto.FeatureStreams}},
		{"terminal", Config{Terminal: shellTerminal()}, []string{agentproto.FeatureStreams, agentproto.FeatureTerminal}},
		{"files", Config{Files: files.Config{Roots: []string{t.TempDir()}}}, []string{agentproto.FeatureStreams, agentproto.FeatureFiles}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := streamHub(t)
			startAgent(t, h, tc.cfg)
			if c := h.next(t, 5*time.Second); !slices.Equal(c.hello.Features, tc.want) {
				t.Errorf("hello features %v, want %v", c.hello.Features, tc.want)
			}
		})
	}
}

func TestFileReadWithOffsetAndDigest(t *testing.T) {
	root, _, c := filesAgent(t)
	content := randomBytes(300 << 10)
	path := filepath.Join(root, "data.bin")
	if err := os.WriteFile(path, content, 0o640); err != nil {
		t.Fatal(err)
	}
	for _, offset := range []int64{0, 1000, int64(len(content))} {
		st, opened, err := c.open(t, agentproto.StreamOpen{Kind: agentproto.StreamFileRead,
			File: &agentproto.FileOpen{Path: path, Offset: offset}})
		if err != nil {
			t.Fatalf("offset %d: %v", offset, err)
		}
		if f := opened.File; f == nil || f.Size != int64(len(content)) || f.Mode != 0o640 || f.Type != "file" || f.Name != "data.bin" {
			t.Errorf("opened file %+v", opened.File)
		}
		got, err := io.ReadAll(st)
		if err != nil || !bytes.Equal(got, content[offset:]) {
			t.Fatalf("offset %d: read %d bytes, %v; want %d", offset, len(got), err, len(content)-int(offset))
		}
		pc, _ := st.PeerClose()
		if pc.SHA256 != digest(content) || pc.Bytes != int64(len(content))-offset {
			t.Errorf("offset %d: close %+v, want sha256 %s", offset, pc, digest(content))
		}
		_ = st.CloseWrite(agentproto.StreamClose{})
	}
	_, _, err := c.open(t, agentproto.StreamOpen{Kind: agentproto.StreamFileRead,
		File: &agentproto.FileOpen{Path: path, Offset: int64(len(content)) + 1}})
	if closeCode(err) != agentproto.StreamErrorOffsetMismatch {
		t.Errorf("offset past the end: %v", err)
	}
}

// upload writes content[from:upto] on a file_write stream and closes it
// cleanly when upto is the end; it returns the stream.
func upload(t *testing.T, c *hubConn, path string, content []byte, from, upto int, sha string) (*agentstream.Stream, error) {
	t.Helper()
	var st *agentstream.Stream
	var err error
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		st, _, err = c.open(t, agentproto.StreamOpen{Kind: agentproto.StreamFileWrite, File: &agentproto.FileOpen{
			Path: path, Offset: int64(from), Size: int64(len(content)), SHA256: sha, Mode: 0o600}})
		// the previous attempt may still hold the destination for a moment
		if closeCode(err) != files.ErrBusy.Code() || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	if _, err := st.Write(content[from:upto]); err != nil {
		t.Fatalf("write: %v", err)
	}
	if upto == len(content) {
		if err := st.CloseWrite(agentproto.StreamClose{}); err != nil {
			t.Fatal(err)
		}
	}
	return st, nil
}

// pending returns the length of the upload's temporary file in dir, -1 if
// there is none.
func pending(t *testing.T, dir string) int64 {
	matches, _ := filepath.Glob(filepath.Join(dir, ".*.cm-upload-*"))
	if len(matches) != 1 {
		return -1
	}
	fi, err := os.Stat(matches[0])
	if err != nil {
		return -1
	}
	return fi.Size()
}

func TestFileWriteResumes(t *testing.T) {
	for _, how := range []string{"aborted", "connection lost"} {
		t.Run(how, func(t *testing.T) {
			root, h, c := filesAgent(t)
			content := randomBytes(200 << 10)
			path := filepath.Join(root, "up.bin")
			st, err := upload(t, c, path, content, 0, 120<<10, digest(content))
			if err != nil {
				t.Fatal(err)
			}
			waitFor(t, func() bool { return st.BytesOut() == 120<<10 && pending(t, root) > 0 })
			time.Sleep(100 * time.Millisecond) // let the agent write what is in flight
			if how == "aborted" {
				_ = st.Abort(agentproto.StreamErrorCancelled, "operator left")
			} else {
				c.ws.CloseNow()
				c = h.next(t, 5*time.Second)
			}
			var have int64
			waitFor(t, func() bool { have = pending(t, root); return have > 0 })
			_, err = upload(t, c, path, content, 0, 0, digest(content))
			var ce *agentstream.CloseError
			if !errors.As(err, &ce) || ce.Close.Code != agentproto.StreamErrorOffsetMismatch || ce.Close.Offset == nil {
				t.Fatalf("restart from 0 with a pending upload: %v", err)
			}
			have = *ce.Close.Offset
			if have <= 0 || have > 120<<10 {
				t.Fatalf("pending offset %d", have)
			}
			st, err = upload(t, c, path, content, int(have), len(content), digest(content))
			if err != nil {
				t.Fatalf("resume at %d: %v", have, err)
			}
			<-st.Done()
			pc, _ := st.PeerClose()
			got, _ := os.ReadFile(path)
			if pc.Code != "" || pc.SHA256 != digest(content) || pc.Bytes != int64(len(content)) || !bytes.Equal(got, content) {
				t.Errorf("after resume: close %+v, file %d bytes", pc, len(got))
			}
			if pending(t, root) != -1 {
				t.Error("temporary file left after the commit")
			}
		})
	}
}

func TestFileWriteDigestMismatch(t *testing.T) {
	root, _, c := filesAgent(t)
	path := filepath.Join(root, "f.txt")
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	content := []byte("new content")
	st, err := upload(t, c, path, content, 0, len(content), digest([]byte("something else")))
	if err != nil {
		t.Fatal(err)
	}
	<-st.Done()
	pc, _ := st.PeerClose()
	if pc.Code != files.ErrDigestMismatch.Code() || pc.SHA256 != digest(content) {
		t.Errorf("close %+v, want digest_mismatch with sha256 %s", pc, digest(content))
	}
	if got, _ := os.ReadFile(path); string(got) != "old" {
		t.Errorf("destination changed to %q", got)
	}
}

func TestFileRefusals(t *testing.T) {
	root, _, c := filesAgent(t)
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(root, "escape")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(root, "dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		kind agentproto.StreamKind
		file *agentproto.FileOpen
		want string
	}{
		{agentproto.StreamFileRead, &agentproto.FileOpen{Path: filepath.Join(outside, "secret")}, "path_outside_roots"},
		{agentproto.StreamFileRead, &agentproto.FileOpen{Path: filepath.Join(root, "escape", "secret")}, "path_outside_roots"},
		{agentproto.StreamFileRead, &agentproto.FileOpen{Path: root + "/../" + filepath.Base(outside) + "/secret"}, "path_outside_roots"},
		{agentproto.StreamFileWrite, &agentproto.FileOpen{Path: filepath.Join(root, "escape", "new"), Size: 1}, "path_outside_roots"},
		{agentproto.StreamFileStat, &agentproto.FileOpen{Path: filepath.Join(root, "escape")}, "path_outside_roots"},
		{agentproto.StreamFileList, &agentproto.FileOpen{Path: filepath.Join(root, "escape")}, "path_outside_roots"},
		{agentproto.StreamFileRead, &agentproto.FileOpen{Path: "relative/path"}, "path_invalid"},
		{agentproto.StreamFileRead, &agentproto.FileOpen{Path: filepath.Join(root, "missing")}, "file_not_found"},
		{agentproto.StreamFileRead, &agentproto.FileOpen{Path: filepath.Join(root, "dir")}, "path_is_directory"},
		{agentproto.StreamFileRead, nil, agentproto.StreamErrorProtocol},
		{"file_teleport", &agentproto.FileOpen{Path: root}, agentproto.StreamErrorUnknownKind},
	} {
		_, _, err := c.open(t, agentproto.StreamOpen{Kind: tc.kind, File: tc.file})
		if got := closeCode(err); got != tc.want {
			t.Errorf("%s %+v: %v (code %q), want %q", tc.kind, tc.file, err, got, tc.want)
		}
	}
}

func TestFilesNotAllowedWithoutRoots(t *testing.T) {
	h := streamHub(t)
	startAgent(t, h, Config{})
	c := h.next(t, 5*time.Second)
	for _, kind := range []agentproto.StreamKind{agentproto.StreamFileRead, agentproto.StreamFileWrite, agentproto.StreamFileStat, agentproto.StreamFileList} {
		_, _, err := c.open(t, agentproto.StreamOpen{Kind: kind, File: &agentproto.FileOpen{Path: "/etc/hostname"}})
		if closeCode(err) != agentproto.StreamErrorUnsupported {
			t.Errorf("%s without roots: %v", kind, err)
		}
	}
	_, _, err := c.open(t, agentproto.StreamOpen{Kind: agentproto.StreamTerminal})
	if closeCode(err) != "terminal_disabled" {
		t.Errorf("terminal without --allow-terminal: %v", err)
	}
}

func TestFileStatAndList(t *testing.T) {
	root, _, c := filesAgent(t)
	for _, name := range []string{"b.txt", "a.txt"} {
		if err := os.WriteFile(filepath.Join(root, name), []byte(name), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(root, "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	st, opened, err := c.open(t, agentproto.StreamOpen{Kind: agentproto.StreamFileStat, File: &agentproto.FileOpen{Path: root + "/a.txt"}})
	if err != nil || opened.File == nil || opened.File.Size != 5 || opened.File.Mode != 0o600 || opened.File.Path != filepath.Join(root, "a.txt") {
		t.Fatalf("stat: %+v %v", opened.File, err)
	}
	if b, err := io.ReadAll(st); err != nil || len(b) != 0 {
		t.Errorf("stat stream data %q %v", b, err)
	}
	st, _, err = c.open(t, agentproto.StreamOpen{Kind: agentproto.StreamFileList, File: &agentproto.FileOpen{Path: root}})
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(st)
	var l agentproto.FileListing
	if err != nil || json.Unmarshal(b, &l) != nil {
		t.Fatalf("listing %q %v", b, err)
	}
	var names []string
	for _, e := range l.Entries {
		names = append(names, e.Name+":"+e.Type)
	}
	if l.Path != root || strings.Join(names, ",") != "a.txt:file,b.txt:file,sub:dir" || l.Truncated {
		t.Errorf("listing %+v", l)
	}
}

// waitFor polls cond for up to 10s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
	}
}

func TestFileWriteRefusals(t *testing.T) {
	root := t.TempDir()
	h := streamHub(t)
	startAgent(t, h, Config{Files: files.Config{Roots: []string{root}, MaxTransferSize: 1000}})
	c := h.next(t, 5*time.Second)
	for _, tc := range []struct {
		name string
		file agentproto.FileOpen
		want string
	}{
		{"over the size limit", agentproto.FileOpen{Path: root + "/big", Size: 1001}, "transfer_too_large"},
		{"setuid mode", agentproto.FileOpen{Path: root + "/suid", Size: 1, Mode: 0o4755}, "transfer_bad_request"},
		{"bad digest", agentproto.FileOpen{Path: root + "/d", Size: 1, SHA256: "XYZ"}, "transfer_bad_request"},
		{"offset past the size", agentproto.FileOpen{Path: root + "/o", Size: 1, Offset: 2}, "transfer_bad_request"},
		{"no parent", agentproto.FileOpen{Path: root + "/missing/f", Size: 1}, "file_not_found"},
		{"directory", agentproto.FileOpen{Path: root, Size: 1}, "path_is_directory"},
	} {
		_, _, err := c.open(t, agentproto.StreamOpen{Kind: agentproto.StreamFileWrite, File: &tc.file})
		if got := closeCode(err); got != tc.want {
			t.Errorf("%s: %v (code %q), want %q", tc.name, err, got, tc.want)
		}
	}
	st, _, err := c.open(t, agentproto.StreamOpen{Kind: agentproto.StreamFileWrite, File: &agentproto.FileOpen{Path: root + "/short", Size: 10}})
	if err != nil {
		t.Fatal(err)
	}
	_, _ = st.Write(make([]byte, 20))
	<-st.Done()
	if pc, _ := st.PeerClose(); pc.Code != "transfer_too_large" {
		t.Errorf("more bytes than declared: close %+v", pc)
	}
	st, _, err = c.open(t, agentproto.StreamOpen{Kind: agentproto.StreamFileWrite, File: &agentproto.FileOpen{Path: root + "/short2", Size: 10}})
	if err != nil {
		t.Fatal(err)
	}
	_, _ = st.Write(make([]byte, 4))
	_ = st.CloseWrite(agentproto.StreamClose{})
	<-st.Done()
	if pc, _ := st.PeerClose(); pc.Code != "size_mismatch" {
		t.Errorf("fewer bytes than declared: close %+v", pc)
	}
}

func TestStreamProtocolViolationsCloseWith1008(t *testing.T) {
	for _, tc := range []struct {
		name string
		send func(c *hubConn)
	}{
		{"data for a stream never opened", func(c *hubConn) {
			c.ws.Write(context.Background(), websocket.MessageBinary, []byte{0, 0, 0, 9, 'x'})
		}},
		{"short data frame", func(c *hubConn) { c.ws.Write(context.Background(), websocket.MessageBinary, []byte{0, 1}) }},
		{"credit for a stream never opened", func(c *hubConn) {
			c.send(agentproto.TypeStreamCredit, agentproto.StreamCredit{StreamID: 7, Bytes: 10})
		}},
		{"malformed stream_close", func(c *hubConn) { c.send(agentproto.TypeStreamClose, "not an object") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := streamHub(t)
			startAgent(t, h, Config{})
			c := h.next(t, 5*time.Second)
			tc.send(c)
			select {
			case <-c.closed:
			case <-time.After(10 * time.Second):
				t.Fatal("connection not closed")
			}
			if c.closeStatus != agentproto.ClosePolicy {
				t.Errorf("closed with %d, want %d", c.closeStatus, agentproto.ClosePolicy)
			}
			h.next(t, 5*time.Second) // and the agent reconnects
		})
	}
}

func TestBinaryFrameWithoutStreamsIsAnswered(t *testing.T) {
	h := newFakeHub(t)
	startAgent(t, h, Config{})
	c := h.next(t, 5*time.Second)
	if c.hello.Features[0] != agentproto.FeatureStreams {
		t.Errorf("hello features %v", c.hello.Features)
	}
	c.ws.Write(context.Background(), websocket.MessageBinary, []byte{0, 0, 0, 1, 'x'})
	var e agentproto.Error
	c.expect(t, agentproto.TypeError, &e)
	c.send(agentproto.TypeStreamOpen, agentproto.StreamOpen{StreamID: 1, Kind: agentproto.StreamFileStat})
	c.quiet(t, 300*time.Millisecond)
	if e.Code != "invalid_message" {
		t.Errorf("error %+v", e)
	}
}
