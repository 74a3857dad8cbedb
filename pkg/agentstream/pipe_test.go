package agentstream

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/home-console/client-manager/pkg/agentproto"
)

// copyBoth writes out on w then closes its side, and reads r to the end.
func copyBoth(w *Stream, out []byte, r *Stream) (<-chan error, <-chan []byte) {
	werr := make(chan error, 1)
	got := make(chan []byte, 1)
	go func() {
		_, err := w.Write(out)
		if err == nil {
			err = w.CloseWrite(agentproto.StreamClose{})
		}
		werr <- err
	}()
	go func() {
		b, err := io.ReadAll(r)
		if err != nil {
			b = append([]byte("read error: "), err.Error()...)
		}
		got <- b
	}()
	return werr, got
}

func TestPipeCleanCloseBothWays(t *testing.T) {
	tests := []struct {
		name      string
		cfg       Config
		toAgent   int
		fromAgent int
	}{
		{"empty", Config{}, 0, 0},
		{"small", Config{Window: 1024, Chunk: 100}, 10, 3000},
		{"many windows", Config{Window: 64 << 10, Chunk: 8 << 10}, 1 << 20, 700 << 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			server, agent, sm, am := pipeStream(t, tt.cfg, agentproto.StreamTerminal)
			up, down := make([]byte, tt.toAgent), make([]byte, tt.fromAgent)
			_, _ = rand.Read(up)
			_, _ = rand.Read(down)
			sw, agentGot := copyBoth(server, up, agent)
			aw, serverGot := copyBoth(agent, down, server)
			if err := <-sw; err != nil {
				t.Fatalf("server write: %v", err)
			}
			if err := <-aw; err != nil {
				t.Fatalf("agent write: %v", err)
			}
			if b := <-agentGot; !bytes.Equal(b, up) {
				t.Fatalf("agent read %d bytes (%.40q), want %d", len(b), b, len(up))
			}
			if b := <-serverGot; !bytes.Equal(b, down) {
				t.Fatalf("server read %d bytes (%.40q), want %d", len(b), b, len(down))
			}
			<-server.Done()
			<-agent.Done()
			waitFor(t, "both muxes empty", func() bool { return sm.Len() == 0 && am.Len() == 0 })
			if c, ok := server.PeerClose(); !ok || c.Bytes != int64(tt.fromAgent) || c.Code != "" {
				t.Fatalf("server saw the agent's close %+v, %v", c, ok)
			}
			if _, err := server.Write([]byte("x")); !errors.Is(err, ErrWriteClosed) {
				t.Fatalf("Write after CloseWrite = %v", err)
			}
			if err := server.CloseWrite(agentproto.StreamClose{}); !errors.Is(err, ErrWriteClosed) {
				t.Fatalf("second CloseWrite = %v", err)
			}
		})
	}
}

func TestPipeAbortBothWays(t *testing.T) {
	tests := []struct {
		name         string
		serverAborts bool
	}{
		{"server aborts", true},
		{"agent aborts", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			server, agent, sm, am := pipeStream(t, Config{Window: 4096, Chunk: 1024}, agentproto.StreamFileRead)
			aborter, peer := agent, server
			if tt.serverAborts {
				aborter, peer = server, agent
			}
			// The peer is blocked writing beyond credit when the abort comes.
			werr := make(chan error, 1)
			go func() { _, err := peer.Write(make([]byte, 1<<20)); werr <- err }()
			time.Sleep(10 * time.Millisecond)
			if err := aborter.Abort("file_busy", "in use"); err != nil {
				t.Fatal(err)
			}
			if err := aborter.Abort("other", "ignored"); err != nil {
				t.Fatalf("second Abort: %v", err)
			}
			var ce *CloseError
			if err := <-werr; !errors.As(err, &ce) || !ce.Remote || ce.Close.Code != "file_busy" || ce.Close.Message != "in use" {
				t.Fatalf("peer's Write ended with %v", err)
			}
			if _, err := peer.Read(make([]byte, 1)); !errors.As(err, &ce) || !ce.Remote {
				t.Fatalf("peer's Read = %v", err)
			}
			if _, err := aborter.Read(make([]byte, 1)); !errors.As(err, &ce) || ce.Remote || ce.Close.Code != "file_busy" {
				t.Fatalf("aborter's Read = %v", err)
			}
			waitFor(t, "both muxes empty", func() bool { return sm.Len() == 0 && am.Len() == 0 })
		})
	}
}

func TestPipeRefusalWithOffset(t *testing.T) {
	sm, am := Pipe(Config{})
	defer am.Close("", "")
	go func() {
		st, err := am.Accept(<-am.Opens())
		if err != nil {
			t.Error(err)
			return
		}
		have := int64(1234)
		_ = st.AbortWith(agentproto.StreamClose{Code: agentproto.StreamErrorOffsetMismatch, Offset: &have})
	}()
	_, _, err := sm.Open(context.Background(), agentproto.StreamOpen{Kind: agentproto.StreamFileWrite,
		File: &agentproto.FileOpen{Path: "/x", Offset: 5, Size: 10}})
	var ce *CloseError
	if !errors.As(err, &ce) || !ce.Remote || ce.Close.Code != agentproto.StreamErrorOffsetMismatch ||
		ce.Close.Offset == nil || *ce.Close.Offset != 1234 {
		t.Fatalf("Open = %v", err)
	}
	waitFor(t, "both muxes empty", func() bool { return sm.Len() == 0 && am.Len() == 0 })
}

func TestPipeCloseEndsTheOtherSide(t *testing.T) {
	server, agent, sm, am := pipeStream(t, Config{}, agentproto.StreamTerminal)
	rerr := make(chan error, 1)
	go func() { _, err := server.Read(make([]byte, 10)); rerr <- err }()
	am.Close("", "")
	var ce *CloseError
	if err := <-rerr; !errors.As(err, &ce) || ce.Close.Code != agentproto.StreamErrorDisconnected {
		t.Fatalf("server Read = %v", err)
	}
	if _, err := agent.Write([]byte("x")); !errors.As(err, &ce) {
		t.Fatalf("agent Write after Close = %v", err)
	}
	if _, _, err := sm.Open(context.Background(), agentproto.StreamOpen{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Open on the closed pipe = %v", err)
	}
}

func TestPipeManyStreamsAtOnce(t *testing.T) {
	sm, am := Pipe(Config{Window: 8192, Chunk: 1024, MaxStreams: 8})
	defer sm.Close("", "")
	go func() {
		for open := range am.Opens() {
			st, err := am.Accept(open)
			if err != nil {
				t.Error(err)
				return
			}
			go func() { // echo
				_ = st.Accept(agentproto.StreamOpened{})
				b, _ := io.ReadAll(st)
				_, _ = st.Write(b)
				_ = st.CloseWrite(agentproto.StreamClose{})
			}()
		}
	}()
	errs := make(chan error, 8)
	for i := range 8 {
		go func() {
			st, _, err := sm.Open(context.Background(), agentproto.StreamOpen{Kind: agentproto.StreamTerminal})
			if err != nil {
				errs <- err
				return
			}
			msg := bytes.Repeat([]byte{byte(i)}, 50000+i)
			w, got := copyBoth(st, msg, st)
			if err := <-w; err != nil {
				errs <- err
				return
			}
			if b := <-got; !bytes.Equal(b, msg) {
				errs <- errors.New("echo differs")
				return
			}
			errs <- nil
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// BenchmarkPipeThroughput measures one stream's throughput over a Pipe
// with the default window and chunk.
func BenchmarkPipeThroughput(b *testing.B) {
	server, agent, _, _ := pipeStream(b, Config{}, agentproto.StreamFileRead)
	chunk := make([]byte, agentproto.DefaultStreamChunkBytes)
	done := make(chan int64)
	go func() {
		n, _ := io.Copy(io.Discard, server)
		done <- n
	}()
	b.SetBytes(int64(len(chunk)))
	b.ResetTimer()
	for range b.N {
		if _, err := agent.Write(chunk); err != nil {
			b.Fatal(err)
		}
	}
	if err := agent.CloseWrite(agentproto.StreamClose{}); err != nil {
		b.Fatal(err)
	}
	if n := <-done; n != int64(b.N)*int64(len(chunk)) {
		b.Fatalf("read %d bytes", n)
	}
}
