package sessions_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"sync/atomic"
	"testing"

	"github.com/home-console/client-manager/internal/fleet"
	"github.com/home-console/client-manager/internal/sessions"
	"github.com/home-console/client-manager/internal/sessions/sessionstest"
	"github.com/home-console/client-manager/pkg/agentproto"
)

// fileAgent is a fake agent with files: uploads are hashed and counted,
// downloads serve content from the requested offset.
type fileAgent struct {
	content  []byte
	received atomic.Int64
	pending  int64 // the length of a pending upload (offset_mismatch otherwise)
	hold     chan struct{}
}

func (f *fileAgent) agent() *sessionstest.Agent {
	return &sessionstest.Agent{Features: []string{agentproto.FeatureFiles}, Handle: f.handle}
}

func (f *fileAgent) handle(s *sessionstest.AgentStream) {
	o := s.Open.File
	switch s.Open.Kind {
	case agentproto.StreamFileWrite:
		f.write(s, o)
	case agentproto.StreamFileRead:
		s.Accept(agentproto.StreamOpened{File: &agentproto.FileInfo{Path: o.Path, Name: "f", Type: "file", Size: int64(len(f.content)), Mode: 0o644}})
		if o.Offset < int64(len(f.content)) {
			_, _ = s.Write(f.content[o.Offset:])
		}
		sum := sha256.Sum256(f.content)
		s.CloseWrite(agentproto.StreamClose{SHA256: hex.EncodeToString(sum[:])})
	case agentproto.StreamFileStat:
		s.Accept(agentproto.StreamOpened{File: &agentproto.FileInfo{Path: o.Path, Name: "x", Type: "dir"}})
		s.CloseWrite(agentproto.StreamClose{})
	case agentproto.StreamFileList:
		s.Accept(agentproto.StreamOpened{})
		data, _ := json.Marshal(agentproto.FileListing{Path: o.Path, Entries: []agentproto.FileInfo{{Name: "a"}}})
		_, _ = s.Write(data)
		s.CloseWrite(agentproto.StreamClose{})
	}
}

func (f *fileAgent) write(s *sessionstest.AgentStream, o *agentproto.FileOpen) {
	if o.Offset != f.pending {
		have := f.pending
		s.Refuse(agentproto.StreamClose{Code: agentproto.StreamErrorOffsetMismatch, Offset: &have})
		return
	}
	s.Accept(agentproto.StreamOpened{})
	if f.hold != nil {
		<-f.hold
	}
	h := sha256.New()
	buf := make([]byte, 1000) // reads slower than the server writes
	for {
		n, err := s.Read(buf)
		h.Write(buf[:n])
		f.received.Add(int64(n))
		if err != nil {
			break
		}
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if o.SHA256 != "" && sum != o.SHA256 {
		s.Abort(agentproto.StreamClose{Code: "digest_mismatch", SHA256: sum})
		return
	}
	s.CloseWrite(agentproto.StreamClose{Bytes: o.Size, SHA256: sum})
}

// watchedBody yields n bytes and records how far it ran ahead of the
// agent's reads.
type watchedBody struct {
	left, read int64
	agent      *fileAgent
	maxAhead   int64
}

func (b *watchedBody) Read(p []byte) (int, error) {
	if b.left == 0 {
		return 0, io.EOF
	}
	n := min(int64(len(p)), b.left)
	b.left -= n
	b.read += n
	b.maxAhead = max(b.maxAhead, b.read-b.agent.received.Load())
	return int(n), nil
}

func TestUploadIsStreamed(t *testing.T) {
	e := newEnv(t, sessions.Config{})
	fa := &fileAgent{}
	e.streams.Set("a1", fa.agent())
	const size = 64 << 20
	body := &watchedBody{left: size, agent: fa}
	res, err := e.m.Upload(t.Context(), fleet.FileRequest{AgentID: "a1", Path: "/srv/f", Size: size}, body)
	if err != nil || res.Size != size || res.Bytes != size || len(res.SHA256) != 64 {
		t.Fatalf("upload: %+v %v", res, err)
	}
	// The body is read at most one copy buffer (32 KiB) ahead of the
	// agent, plus the chunk being read: it is never held whole.
	if body.maxAhead > 64<<10 {
		t.Fatalf("the body ran %d bytes ahead of the agent", body.maxAhead)
	}
	t.Logf("64 MiB upload: at most %d KiB read ahead of the agent", body.maxAhead>>10)
}

func TestUploadErrors(t *testing.T) {
	digest := sha256.Sum256([]byte("abc"))
	wrong := hex.EncodeToString(digest[:])
	tests := []struct {
		name  string
		agent *sessionstest.Agent
		req   fleet.FileRequest
		code  fleet.ErrorCode
		check func(t *testing.T, err error)
	}{
		{"too large for the server", (&fileAgent{}).agent(), fleet.FileRequest{Size: 2 << 20}, fleet.CodeTransferTooLarge, nil},
		{"offline", &sessionstest.Agent{Offline: true}, fleet.FileRequest{Size: 3}, fleet.CodeAgentOffline, nil},
		{"no files feature", &sessionstest.Agent{Features: []string{agentproto.FeatureTerminal}}, fleet.FileRequest{Size: 3}, fleet.CodeFilesNotAllowed, nil},
		{"agent not allowed", refusing(agentproto.FeatureFiles, agentproto.StreamErrorUnsupported), fleet.FileRequest{Size: 3}, fleet.CodeFilesNotAllowed, nil},
		{"outside roots", refusing(agentproto.FeatureFiles, "path_outside_roots"), fleet.FileRequest{Size: 3}, fleet.CodePathOutsideRoots, nil},
		{"offset mismatch", (&fileAgent{pending: 2}).agent(), fleet.FileRequest{Size: 3, Offset: 1}, fleet.CodeOffsetMismatch,
			func(t *testing.T, err error) {
				var om *fleet.OffsetMismatchError
				if !errors.As(err, &om) || om.Offset != 2 {
					t.Fatalf("%v: want offset 2", err)
				}
			}},
		{"digest mismatch", (&fileAgent{}).agent(), fleet.FileRequest{Size: 3, SHA256: wrong[:63] + "0"}, fleet.CodeDigestMismatch,
			func(t *testing.T, err error) {
				var dm *fleet.DigestMismatchError
				if !errors.As(err, &dm) || dm.Actual != wrong {
					t.Fatalf("%v: want the actual digest %s", err, wrong)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, sessions.Config{FilesMaxBytes: 1 << 20})
			e.streams.Set("a1", tt.agent)
			tt.req.AgentID, tt.req.Path = "a1", "/srv/f"
			body := []byte("abc")[:min(3, tt.req.Size-tt.req.Offset)]
			_, err := e.m.Upload(t.Context(), tt.req, bytes.NewReader(body))
			if fleet.CodeOf(err) != tt.code {
				t.Fatalf("error %v (%s), want %s", err, fleet.CodeOf(err), tt.code)
			}
			if tt.check != nil {
				tt.check(t, err)
			}
		})
	}
}

func TestUploadAgentDisconnects(t *testing.T) {
	e := newEnv(t, sessions.Config{})
	e.streams.Set("a1", &sessionstest.Agent{Features: []string{agentproto.FeatureFiles}, Handle: func(s *sessionstest.AgentStream) {
		s.Accept(agentproto.StreamOpened{})
		_, _ = s.Read(make([]byte, 10))
		s.Abort(agentproto.StreamClose{Code: agentproto.StreamErrorDisconnected})
	}})
	_, err := e.m.Upload(t.Context(), fleet.FileRequest{AgentID: "a1", Path: "/f", Size: 1 << 20}, bytes.NewReader(make([]byte, 1<<20)))
	if fleet.CodeOf(err) != fleet.CodeAgentDisconnected {
		t.Fatalf("error %v, want agent_disconnected", err)
	}
}

func TestTransferLimitPerAgent(t *testing.T) {
	e := newEnv(t, sessions.Config{FilesMaxPerAgent: 2})
	fa := &fileAgent{hold: make(chan struct{})}
	e.streams.Set("a1", fa.agent())
	e.streams.Set("a2", (&fileAgent{}).agent())
	done := make(chan error, 2)
	for range 2 {
		go func() {
			_, err := e.m.Upload(context.Background(), fleet.FileRequest{AgentID: "a1", Path: "/f", Size: 1}, bytes.NewReader([]byte("x")))
			done <- err
		}()
	}
	for len(e.streams.Opened()) < 2 {
		waitABit()
	}
	_, err := e.m.Upload(t.Context(), fleet.FileRequest{AgentID: "a1", Path: "/g", Size: 1}, bytes.NewReader([]byte("x")))
	if fleet.CodeOf(err) != fleet.CodeTransferLimit {
		t.Fatalf("third transfer: %v, want transfer_limit", err)
	}
	if _, err := e.m.Upload(t.Context(), fleet.FileRequest{AgentID: "a2", Path: "/g", Size: 1}, bytes.NewReader([]byte("x"))); err != nil {
		t.Fatalf("another agent's transfer: %v", err)
	}
	close(fa.hold)
	for range 2 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.m.Upload(t.Context(), fleet.FileRequest{AgentID: "a1", Path: "/g", Size: 1}, bytes.NewReader([]byte("x"))); err != nil {
		t.Fatalf("after the others finished: %v", err)
	}
}

func TestDownload(t *testing.T) {
	content := bytes.Repeat([]byte("0123456789"), 10000)
	sum := sha256.Sum256(content)
	tests := []struct {
		name   string
		offset int64
		want   []byte
		code   fleet.ErrorCode
	}{
		{"whole", 0, content, ""},
		{"from offset", 99990, content[99990:], ""},
		{"at the end", int64(len(content)), nil, fleet.CodeRangeNotSatisfiable},
		{"past the end", int64(len(content)) + 5, nil, fleet.CodeRangeNotSatisfiable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, sessions.Config{})
			e.streams.Set("a1", (&fileAgent{content: content}).agent())
			var got bytes.Buffer
			var info agentproto.FileInfo
			res, err := e.m.Download(t.Context(), fleet.FileRequest{AgentID: "a1", Path: "/f", Offset: tt.offset}, func(i agentproto.FileInfo) io.Writer {
				info = i
				return &got
			})
			if fleet.CodeOf(err) != tt.code {
				t.Fatalf("error %v, want %q", err, tt.code)
			}
			if tt.code != "" {
				return
			}
			if !bytes.Equal(got.Bytes(), tt.want) || info.Size != int64(len(content)) || res.SHA256 != hex.EncodeToString(sum[:]) || res.Bytes != int64(len(tt.want)) {
				t.Fatalf("got %d bytes, info %+v, result %+v", got.Len(), info, res)
			}
		})
	}
}

func TestStatAndList(t *testing.T) {
	e := newEnv(t, sessions.Config{})
	e.streams.Set("a1", (&fileAgent{}).agent())
	info, err := e.m.Stat(t.Context(), "a1", "/srv")
	if err != nil || info.Type != "dir" || info.Path != "/srv" {
		t.Fatalf("stat: %+v %v", info, err)
	}
	l, err := e.m.List(t.Context(), "a1", "/srv")
	if err != nil || l.Path != "/srv" || len(l.Entries) != 1 {
		t.Fatalf("list: %+v %v", l, err)
	}
}
