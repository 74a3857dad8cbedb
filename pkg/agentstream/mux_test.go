package agentstream

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/home-console/client-manager/pkg/agentproto"
)

// recorder is a Transport that keeps what it is given.
type recorder struct {
	mu      sync.Mutex
	control []sent
	frames  [][]byte
	notify  chan struct{}
}

type sent struct {
	typ  string
	data any
}

func newRecorder() *recorder { return &recorder{notify: make(chan struct{}, 1024)} }

func (r *recorder) SendControl(typ string, data any) error {
	r.mu.Lock()
	r.control = append(r.control, sent{typ, data})
	r.mu.Unlock()
	r.notify <- struct{}{}
	return nil
}

func (r *recorder) SendData(frame []byte) error {
	r.mu.Lock()
	r.frames = append(r.frames, frame)
	r.mu.Unlock()
	r.notify <- struct{}{}
	return nil
}

func (r *recorder) controls() []sent {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]sent(nil), r.control...)
}

func (r *recorder) dataBytes() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, f := range r.frames {
		n += len(f) - agentproto.StreamHeaderBytes
	}
	return n
}

// waitFor polls cond for up to two seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// acceptOne (agent side) accepts a stream on an agent Mux fed by hand.
func acceptOne(t *testing.T, m *Mux, id uint32) *Stream {
	t.Helper()
	st, err := m.Accept(agentproto.StreamOpen{StreamID: id, Kind: agentproto.StreamTerminal})
	if err != nil {
		t.Fatalf("Accept: %v", err)
	}
	if err := st.Accept(agentproto.StreamOpened{}); err != nil {
		t.Fatalf("stream Accept: %v", err)
	}
	return st
}

func dataFrame(id uint32, n int) []byte {
	f := make([]byte, agentproto.StreamHeaderBytes+n)
	binary.BigEndian.PutUint32(f, id)
	return f
}

func TestWriteChunksWithinCredit(t *testing.T) {
	tests := []struct {
		name          string
		window        int64
		chunk, length int
	}{
		{"one small chunk", 4096, 1024, 10},
		{"exact chunks", 4096, 1024, 4096},
		{"window smaller than chunk", 1000, 4096, 1000},
		{"ragged tail", 8192, 1000, 8192},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := newRecorder()
			m := New(rec, Config{Window: tt.window, Chunk: tt.chunk})
			st := acceptOne(t, m, 1)
			payload := bytes.Repeat([]byte("x"), tt.length)
			n, err := st.Write(payload)
			if err != nil || n != tt.length {
				t.Fatalf("Write = %d, %v", n, err)
			}
			var got []byte
			for _, f := range rec.frames {
				if id := binary.BigEndian.Uint32(f); id != 1 {
					t.Fatalf("frame for stream %d", id)
				}
				if p := len(f) - 4; p > tt.chunk || p == 0 {
					t.Fatalf("frame payload %d, chunk %d", p, tt.chunk)
				}
				got = append(got, f[4:]...)
			}
			if !bytes.Equal(got, payload) || st.BytesOut() != int64(tt.length) {
				t.Fatalf("sent %d bytes, BytesOut %d, want %d", len(got), st.BytesOut(), tt.length)
			}
		})
	}
}

func TestWriteBlocksForCreditAndResumes(t *testing.T) {
	rec := newRecorder()
	m := New(rec, Config{Window: 4096, Chunk: 1024})
	st := acceptOne(t, m, 7)
	done := make(chan error, 1)
	go func() {
		_, err := st.Write(make([]byte, 10000))
		done <- err
	}()
	waitFor(t, "a window of data", func() bool { return rec.dataBytes() == 4096 })
	time.Sleep(20 * time.Millisecond)
	if got := rec.dataBytes(); got != 4096 {
		t.Fatalf("sent %d bytes beyond the window 4096", got)
	}
	select {
	case err := <-done:
		t.Fatalf("Write returned without credit: %v", err)
	default:
	}
	if err := m.Handle(agentproto.StreamCredit{StreamID: 7, Bytes: 4096}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the second window", func() bool { return rec.dataBytes() == 8192 })
	if err := m.Handle(agentproto.StreamCredit{StreamID: 7, Bytes: 4096}); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Write: %v", err)
	}
	if got := rec.dataBytes(); got != 10000 {
		t.Fatalf("sent %d bytes, want 10000", got)
	}
}

func TestWriteContextCancelled(t *testing.T) {
	m := New(newRecorder(), Config{Window: 1024, Chunk: 1024})
	st := acceptOne(t, m, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	n, err := st.WriteContext(ctx, make([]byte, 3000))
	if n != 1024 || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WriteContext = %d, %v; want 1024, deadline exceeded", n, err)
	}
}

func TestHandleDataViolations(t *testing.T) {
	tests := []struct {
		name   string
		frames [][]byte
		want   string // in the last frame's error; "" for none
	}{
		{"within credit", [][]byte{dataFrame(1, 1024), dataFrame(1, 1024), dataFrame(1, 1024), dataFrame(1, 1024)}, ""},
		{"beyond credit", [][]byte{dataFrame(1, 1024), dataFrame(1, 1024), dataFrame(1, 1024), dataFrame(1, 1024), dataFrame(1, 1)}, "beyond credit"},
		{"over chunk", [][]byte{dataFrame(1, 1025)}, "over the chunk size"},
		{"short header", [][]byte{{0, 0, 1}}, "shorter than its stream id"},
		{"unknown stream", [][]byte{dataFrame(2, 10)}, "unknown or closed stream 2"},
		{"empty payload", [][]byte{dataFrame(1, 0)}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := New(newRecorder(), Config{Window: 4096, Chunk: 1024})
			acceptOne(t, m, 1)
			var err error
			for i, f := range tt.frames {
				err = m.HandleData(f)
				if err != nil && i < len(tt.frames)-1 {
					t.Fatalf("frame %d: %v", i, err)
				}
			}
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("HandleData: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("HandleData = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestHandleControlViolations(t *testing.T) {
	tests := []struct {
		name string
		msg  any
		want string
	}{
		{"credit beyond window", agentproto.StreamCredit{StreamID: 1, Bytes: 1}, "exceeds its window"},
		{"zero credit", agentproto.StreamCredit{StreamID: 1, Bytes: 0}, "with 0 bytes"},
		{"credit for unknown stream", agentproto.StreamCredit{StreamID: 9, Bytes: 10}, "unknown stream 9"},
		{"unexpected opened", agentproto.StreamOpened{StreamID: 1}, "unexpected stream_opened"},
		{"close for unknown stream", agentproto.StreamClose{StreamID: 5}, "unknown stream 5"},
		{"unhandled type", agentproto.StreamOpen{StreamID: 1}, "cannot handle"},
		{"pointer", &agentproto.StreamClose{StreamID: 1}, "cannot handle"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := New(newRecorder(), Config{Window: 4096, Chunk: 1024})
			acceptOne(t, m, 1)
			err := m.Handle(tt.msg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Handle = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestSecondPeerCloseAndDataAfterClose(t *testing.T) {
	m := New(newRecorder(), Config{Window: 4096, Chunk: 1024})
	acceptOne(t, m, 1)
	if err := m.Handle(agentproto.StreamClose{StreamID: 1}); err != nil {
		t.Fatal(err)
	}
	if err := m.HandleData(dataFrame(1, 1)); err == nil || !strings.Contains(err.Error(), "after its stream_close") {
		t.Fatalf("data after close: %v", err)
	}
	if err := m.Handle(agentproto.StreamClose{StreamID: 1}); err == nil || !strings.Contains(err.Error(), "second stream_close") {
		t.Fatalf("second close: %v", err)
	}
}

func TestAcceptRefusals(t *testing.T) {
	tests := []struct {
		name     string
		ids      []uint32 // accepted in order; the last one is checked
		code     string   // "" accepted
		errIs    error
		maxOpens int
	}{
		{"first", []uint32{1}, "", nil, 2},
		{"gaps are fine", []uint32{1, 5}, "", nil, 2},
		{"zero id", []uint32{0}, agentproto.StreamErrorProtocol, nil, 2},
		{"reused id", []uint32{1, 1}, agentproto.StreamErrorProtocol, nil, 2},
		{"decreasing id", []uint32{4, 3}, agentproto.StreamErrorProtocol, nil, 2},
		{"over the limit", []uint32{1, 2, 3}, agentproto.StreamErrorLimit, ErrTooManyStreams, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := newRecorder()
			m := New(rec, Config{MaxStreams: tt.maxOpens})
			var err error
			for _, id := range tt.ids {
				_, err = m.Accept(agentproto.StreamOpen{StreamID: id, Kind: agentproto.StreamFileStat})
			}
			last := tt.ids[len(tt.ids)-1]
			sentClose := rec.controls()
			if tt.code == "" {
				if err != nil || len(sentClose) != 0 {
					t.Fatalf("Accept(%d) = %v, sent %v", last, err, sentClose)
				}
				return
			}
			if err == nil || (tt.errIs != nil && !errors.Is(err, tt.errIs)) {
				t.Fatalf("Accept(%d) = %v, want an error (%v)", last, err, tt.errIs)
			}
			if len(sentClose) != 1 || sentClose[0].typ != agentproto.TypeStreamClose {
				t.Fatalf("sent %v, want one stream_close", sentClose)
			}
			c := sentClose[0].data.(agentproto.StreamClose)
			if c.StreamID != last || c.Code != tt.code {
				t.Fatalf("refusal %+v, want stream %d code %s", c, last, tt.code)
			}
			// The server's answer to the refusal is not a violation.
			if err := m.Handle(agentproto.StreamClose{StreamID: last}); err != nil && last != 0 {
				t.Fatalf("answer to the refusal: %v", err)
			}
		})
	}
}

func TestOpenLimitAndClosed(t *testing.T) {
	rec := newRecorder()
	m := New(rec, Config{MaxStreams: 1})
	ctx, cancel := context.WithCancel(context.Background())
	go func() { _, _, _ = m.Open(ctx, agentproto.StreamOpen{Kind: agentproto.StreamTerminal}) }()
	waitFor(t, "the first open", func() bool { return m.Len() == 1 })
	if _, _, err := m.Open(ctx, agentproto.StreamOpen{Kind: agentproto.StreamTerminal}); !errors.Is(err, ErrTooManyStreams) {
		t.Fatalf("second Open = %v, want ErrTooManyStreams", err)
	}
	cancel()
	m.Close("", "")
	if _, _, err := m.Open(context.Background(), agentproto.StreamOpen{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Open after Close = %v", err)
	}
	if _, err := m.Accept(agentproto.StreamOpen{StreamID: 9}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Accept after Close = %v", err)
	}
}

func TestOpenCancelSendsCancelled(t *testing.T) {
	rec := newRecorder()
	m := New(rec, Config{})
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, _, err := m.Open(ctx, agentproto.StreamOpen{Kind: agentproto.StreamFileRead})
		errc <- err
	}()
	waitFor(t, "stream_open", func() bool { return len(rec.controls()) == 1 })
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("Open = %v, want context.Canceled", err)
	}
	sent := rec.controls()
	if len(sent) != 2 || sent[1].typ != agentproto.TypeStreamClose {
		t.Fatalf("sent %+v", sent)
	}
	if c := sent[1].data.(agentproto.StreamClose); c.StreamID != 1 || c.Code != agentproto.StreamErrorCancelled {
		t.Fatalf("close %+v", c)
	}
	// In flight: the agent's stream_opened, data and close are fine.
	for _, msg := range []any{agentproto.StreamOpened{StreamID: 1}} {
		if err := m.Handle(msg); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Handle(agentproto.StreamClose{StreamID: 1}); err != nil {
		t.Fatal(err)
	}
	if m.Len() != 0 {
		t.Fatalf("Len = %d after both closes", m.Len())
	}
}

func TestControlsOrderAndDropOldestResize(t *testing.T) {
	m := New(newRecorder(), Config{})
	st := acceptOne(t, m, 1)
	sig := agentproto.TerminalSignal{StreamID: 1, Signal: "SIGINT"}
	if err := m.Handle(sig); err != nil {
		t.Fatal(err)
	}
	for i := range controlsBuffer + 2 { // 18 resizes: 3 too many
		if err := m.Handle(agentproto.TerminalResize{StreamID: 1, Cols: 80 + i, Rows: 24}); err != nil {
			t.Fatal(err)
		}
	}
	var got []any
	for range controlsBuffer {
		got = append(got, <-st.Controls())
	}
	if got[0] != any(sig) {
		t.Fatalf("first control %v, want the signal", got[0])
	}
	for i, c := range got[1:] {
		if r := c.(agentproto.TerminalResize); r.Cols != 83+i {
			t.Fatalf("control %d: %+v, want cols %d", i+1, r, 83+i)
		}
	}
	if err := m.Handle(agentproto.StreamClose{StreamID: 1, Code: agentproto.StreamErrorCancelled}); err != nil {
		t.Fatal(err)
	}
	if _, ok := <-st.Controls(); ok {
		t.Fatal("Controls still open after the abort")
	}
}

func TestCreditReturnedInBatches(t *testing.T) {
	rec := newRecorder()
	m := New(rec, Config{Window: 4096, Chunk: 512})
	st := acceptOne(t, m, 1)
	for range 8 {
		if err := m.HandleData(dataFrame(1, 512)); err != nil {
			t.Fatal(err)
		}
	}
	p := make([]byte, 100)
	var total int64
	for total < 4096 {
		n, err := st.Read(p)
		if err != nil {
			t.Fatal(err)
		}
		total += int64(n)
	}
	var credited int64
	for _, c := range rec.controls()[1:] { // [0] is stream_opened
		cr := c.data.(agentproto.StreamCredit)
		if cr.Bytes < 1024 {
			t.Fatalf("credit of %d bytes, below window/4", cr.Bytes)
		}
		credited += cr.Bytes
	}
	if credited < 4096-1024 || credited > 4096 {
		t.Fatalf("credited %d of 4096 read", credited)
	}
}

func TestMuxCloseEndsEverything(t *testing.T) {
	m := New(newRecorder(), Config{Window: 1024, Chunk: 1024})
	reader, writer := acceptOne(t, m, 1), acceptOne(t, m, 2)
	if _, err := writer.Write(make([]byte, 1024)); err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 2)
	go func() { _, err := reader.Read(make([]byte, 10)); errs <- err }()
	go func() { _, err := writer.Write(make([]byte, 10)); errs <- err }()
	time.Sleep(10 * time.Millisecond)
	m.Close(agentproto.StreamErrorShutdown, "stopping")
	m.Close("", "") // idempotent
	for range 2 {
		var ce *CloseError
		if err := <-errs; !errors.As(err, &ce) || ce.Close.Code != agentproto.StreamErrorShutdown || ce.Remote {
			t.Fatalf("blocked call ended with %v", err)
		}
	}
	<-reader.Done()
	if m.Len() != 0 || m.HandleData(dataFrame(1, 1)) != nil {
		t.Fatal("Mux not empty or not ignoring data after Close")
	}
}

// pipeStream opens a stream on a Pipe and accepts it on the agent side.
func pipeStream(t testing.TB, cfg Config, kind agentproto.StreamKind) (server, agent *Stream, sm, am *Mux) {
	t.Helper()
	sm, am = Pipe(cfg)
	t.Cleanup(func() { sm.Close("", "") })
	accepted := make(chan *Stream, 1)
	go func() {
		open := <-am.Opens()
		st, err := am.Accept(open)
		if err == nil {
			err = st.Accept(agentproto.StreamOpened{PID: 42})
		}
		if err != nil {
			t.Errorf("agent accept: %v", err)
		}
		accepted <- st
	}()
	server, opened, err := sm.Open(context.Background(), agentproto.StreamOpen{Kind: kind})
	if err != nil || opened.PID != 42 || opened.StreamID != server.ID() {
		t.Fatalf("Open = %+v, %v", opened, err)
	}
	return server, <-accepted, sm, am
}
