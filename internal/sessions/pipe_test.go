package sessions_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/home-console/client-manager/internal/fleet"
	"github.com/home-console/client-manager/internal/sessions"
	"github.com/home-console/client-manager/pkg/agentproto"
	"github.com/home-console/client-manager/pkg/agentstream"
)

// pipeStreams is sessions.Streams over an agentstream.Pipe: the real
// stream implementation, credit included, with handle as the agent.
type pipeStreams struct {
	server *agentstream.Mux
}

// pipeStream adds Control, which the Pipe cannot carry (the hub sends
// terminal controls on its own queue).
type pipeStream struct{ *agentstream.Stream }

func (pipeStream) Control(any) error { return errors.New("no controls over a pipe") }

func newPipe(t *testing.T, cfg agentstream.Config, handle func(*agentstream.Stream)) *pipeStreams {
	t.Helper()
	server, agent := agentstream.Pipe(cfg)
	t.Cleanup(func() { server.Close(agentproto.StreamErrorDisconnected, "test over") })
	go func() {
		for open := range agent.Opens() {
			st, err := agent.Accept(open)
			if err == nil {
				go handle(st)
			}
		}
	}()
	return &pipeStreams{server: server}
}

func (p *pipeStreams) OpenStream(ctx context.Context, _ string, open agentproto.StreamOpen) (sessions.Stream, agentproto.StreamOpened, error) {
	st, opened, err := p.server.Open(ctx, open)
	if err != nil {
		return nil, opened, err
	}
	return pipeStream{st}, opened, nil
}

func (p *pipeStreams) Features(string) ([]string, bool) {
	return []string{agentproto.FeatureStreams, agentproto.FeatureFiles, agentproto.FeatureTerminal}, true
}

func (p *pipeStreams) CloseOf(err error) (agentproto.StreamClose, bool) {
	var ce *agentstream.CloseError
	if errors.As(err, &ce) {
		return ce.Close, true
	}
	return agentproto.StreamClose{}, false
}

// TestUploadOverAPipe: a 16 MiB upload through 64 KiB windows arrives
// whole; the agent's refusal with an offset and its digest abort keep
// their codes.
func TestUploadOverAPipe(t *testing.T) {
	content := bytes.Repeat([]byte("streamed "), 16<<20/9)
	sum := sha256.Sum256(content)
	streams := newPipe(t, agentstream.Config{Window: 64 << 10, Chunk: 16 << 10}, func(st *agentstream.Stream) {
		o := st.Request().File
		if o.Offset != 0 {
			have := int64(0)
			_ = st.AbortWith(agentproto.StreamClose{Code: agentproto.StreamErrorOffsetMismatch, Offset: &have})
			return
		}
		_ = st.Accept(agentproto.StreamOpened{})
		h := sha256.New()
		n, _ := io.Copy(h, st)
		got := hex.EncodeToString(h.Sum(nil))
		if o.SHA256 != "" && o.SHA256 != got {
			_ = st.AbortWith(agentproto.StreamClose{Code: "digest_mismatch", SHA256: got})
			return
		}
		_ = st.CloseWrite(agentproto.StreamClose{Bytes: n, SHA256: got})
	})
	m, err := sessions.New(streams, sessions.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	res, err := m.Upload(t.Context(), fleet.FileRequest{AgentID: "a", Path: "/f", Size: int64(len(content))}, bytes.NewReader(content))
	if err != nil || res.SHA256 != hex.EncodeToString(sum[:]) || res.Size != int64(len(content)) {
		t.Fatalf("upload: %+v %v", res, err)
	}
	t.Logf("16 MiB over a pipe with 64 KiB windows in %v", time.Since(start))
	_, err = m.Upload(t.Context(), fleet.FileRequest{AgentID: "a", Path: "/f", Size: 3, SHA256: hex.EncodeToString(sum[:])}, bytes.NewReader([]byte("abc")))
	if fleet.CodeOf(err) != fleet.CodeDigestMismatch {
		t.Fatalf("digest mismatch: %v", err)
	}
	_, err = m.Upload(t.Context(), fleet.FileRequest{AgentID: "a", Path: "/f", Size: 3, Offset: 1}, bytes.NewReader([]byte("bc")))
	var om *fleet.OffsetMismatchError
	if !errors.As(err, &om) || om.Offset != 0 {
		t.Fatalf("offset mismatch: %v", err)
	}
}

// TestDownloadOverAPipe: a download from an offset, and one cut by the
// connection's end (agent_disconnected after the start).
func TestDownloadOverAPipe(t *testing.T) {
	content := bytes.Repeat([]byte("0123456789"), 100000)
	streams := newPipe(t, agentstream.Config{Window: 32 << 10}, func(st *agentstream.Stream) {
		o := st.Request().File
		_ = st.Accept(agentproto.StreamOpened{File: &agentproto.FileInfo{Path: o.Path, Size: int64(len(content))}})
		if o.Path == "/cut" {
			_, _ = st.Write(content[:100000])
			_ = st.Abort(agentproto.StreamErrorDisconnected, "gone")
			return
		}
		_, _ = st.Write(content[o.Offset:])
		_ = st.CloseWrite(agentproto.StreamClose{SHA256: "whole"})
	})
	m, err := sessions.New(streams, sessions.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	res, err := m.Download(t.Context(), fleet.FileRequest{AgentID: "a", Path: "/f", Offset: 500000}, func(agentproto.FileInfo) io.Writer { return &got })
	if err != nil || !bytes.Equal(got.Bytes(), content[500000:]) || res.SHA256 != "whole" {
		t.Fatalf("download: %d bytes, %+v, %v", got.Len(), res, err)
	}
	got.Reset()
	started := false
	_, err = m.Download(t.Context(), fleet.FileRequest{AgentID: "a", Path: "/cut"}, func(agentproto.FileInfo) io.Writer { started = true; return &got })
	if !started || fleet.CodeOf(err) != fleet.CodeAgentDisconnected {
		t.Fatalf("cut download: started %v, %v", started, err)
	}
}
