package hubtest

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/home-console/client-manager/pkg/agentproto"
	"github.com/home-console/client-manager/pkg/agentstream"
)

// StreamAgent is an agent that negotiated streams.v1: a real WebSocket
// client with an agentstream.Mux, a reader goroutine and a writer that
// sends control frames ahead of data (stream_close behind it), like the
// agent SDK.
type StreamAgent struct {
	Conn    *websocket.Conn
	Welcome agentproto.Welcome
	Mux     *agentstream.Mux
	// Opens delivers each stream the hub opened, registered with
	// Mux.Accept; the test calls Accept or Abort on it.
	Opens chan *agentstream.Stream
	// Messages delivers every other text message with its arrival time.
	Messages chan Arrival
	// Ended is closed when the reader stops; Err says why.
	Ended chan struct{}
	Err   error

	mu      sync.Mutex
	cond    *sync.Cond
	control [][]byte
	data    []queued
	stopped bool
}

// Arrival is a message and when the agent read it.
type Arrival struct {
	Env agentproto.Envelope
	At  time.Time
}

type queued struct {
	b    []byte
	text bool
}

// ConnectStreams dials with credential, says hello listing features
// (streams.v1 first) and starts the agent's goroutines until the test ends.
func (e *Env) ConnectStreams(t testing.TB, credential string, features ...string) *StreamAgent {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	raw, _, err := e.Dial(ctx, credential)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	hello := agentproto.Hello{Hostname: "test", OS: "linux", Arch: "amd64", Version: "t",
		Features: append([]string{agentproto.FeatureStreams}, features...)}
	if err := raw.Send(ctx, agentproto.TypeHello, "h1", hello); err != nil {
		t.Fatalf("send hello: %v", err)
	}
	a := &StreamAgent{Conn: raw.Conn, Opens: make(chan *agentstream.Stream, 16),
		Messages: make(chan Arrival, 1024), Ended: make(chan struct{})}
	a.cond = sync.NewCond(&a.mu)
	raw.Expect(t, agentproto.TypeWelcome, &a.Welcome)
	a.Mux = agentstream.New(a, agentstream.Config{
		Window: a.Welcome.StreamWindowBytes, Chunk: int(a.Welcome.StreamChunkBytes), MaxStreams: 64,
	})
	go a.readLoop()
	go a.writeLoop()
	// The welcome is queued just before the hub marks the agent online.
	// An Env without a Hub (a whole service under test) leaves that wait
	// to the caller.
	for deadline := time.Now().Add(5 * time.Second); e.Hub != nil && !e.Hub.Online(a.Welcome.AgentID); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("agent %s not online 5s after its welcome", a.Welcome.AgentID)
		}
	}
	t.Cleanup(func() {
		_ = a.Conn.CloseNow()
		a.stop()
		<-a.Ended
	})
	return a
}

// SendControl implements agentstream.Transport.
func (a *StreamAgent) SendControl(typ string, data any) error {
	b, err := encode(typ, "", data)
	if err != nil {
		return err
	}
	return a.push(queued{b: b, text: true}, typ != agentproto.TypeStreamClose)
}

// SendData implements agentstream.Transport.
func (a *StreamAgent) SendData(frame []byte) error {
	return a.push(queued{b: frame}, false)
}

// Send queues a text message ahead of stream data.
func (a *StreamAgent) Send(typ, id string, data any) error {
	b, err := encode(typ, id, data)
	if err != nil {
		return err
	}
	return a.push(queued{b: b, text: true}, true)
}

func encode(typ, id string, data any) ([]byte, error) {
	env := agentproto.Envelope{Type: typ, ID: id}
	if data != nil {
		raw, err := json.Marshal(data)
		if err != nil {
			return nil, err
		}
		env.Data = raw
	}
	return json.Marshal(env)
}

func (a *StreamAgent) push(q queued, control bool) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.stopped {
		return agentstream.ErrClosed
	}
	if control {
		a.control = append(a.control, q.b)
	} else {
		a.data = append(a.data, q)
	}
	a.cond.Signal()
	return nil
}

func (a *StreamAgent) stop() {
	a.mu.Lock()
	a.stopped = true
	a.cond.Broadcast()
	a.mu.Unlock()
}

func (a *StreamAgent) next() (queued, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for !a.stopped && len(a.control)+len(a.data) == 0 {
		a.cond.Wait()
	}
	switch {
	case a.stopped:
		return queued{}, false
	case len(a.control) > 0:
		b := a.control[0]
		a.control = a.control[1:]
		return queued{b: b, text: true}, true
	}
	q := a.data[0]
	a.data = a.data[1:]
	return q, true
}

func (a *StreamAgent) writeLoop() {
	for {
		q, ok := a.next()
		if !ok {
			return
		}
		typ := websocket.MessageBinary
		if q.text {
			typ = websocket.MessageText
		}
		if err := a.Conn.Write(context.Background(), typ, q.b); err != nil {
			a.stop()
			return
		}
	}
}

func (a *StreamAgent) readLoop() {
	defer close(a.Ended)
	defer a.Mux.Close("", "connection ended")
	defer a.stop()
	for {
		typ, b, err := a.Conn.Read(context.Background())
		if err != nil {
			a.Err = err
			return
		}
		if typ == websocket.MessageBinary {
			err = a.Mux.HandleData(b)
		} else {
			err = a.handleText(b)
		}
		if err != nil {
			a.Err = err
			_ = a.Conn.Close(agentproto.ClosePolicy, err.Error())
			return
		}
	}
}

func (a *StreamAgent) handleText(b []byte) error {
	at := time.Now()
	var env agentproto.Envelope
	if err := json.Unmarshal(b, &env); err != nil {
		return err
	}
	var msg any
	var err error
	switch env.Type {
	case agentproto.TypeStreamOpen:
		var open agentproto.StreamOpen
		if err := json.Unmarshal(env.Data, &open); err != nil {
			return err
		}
		if st, err := a.Mux.Accept(open); err == nil {
			a.Opens <- st
		}
		return nil
	case agentproto.TypeStreamCredit:
		msg, err = decode[agentproto.StreamCredit](env.Data)
	case agentproto.TypeStreamClose:
		msg, err = decode[agentproto.StreamClose](env.Data)
	case agentproto.TypeTerminalResize:
		msg, err = decode[agentproto.TerminalResize](env.Data)
	case agentproto.TypeTerminalSignal:
		msg, err = decode[agentproto.TerminalSignal](env.Data)
	default:
		select {
		case a.Messages <- Arrival{Env: env, At: at}:
		default:
			return fmt.Errorf("test agent: %s not read by the test", env.Type)
		}
		return nil
	}
	if err != nil {
		return err
	}
	return a.Mux.Handle(msg)
}

func decode[T any](b []byte) (T, error) {
	var v T
	err := json.Unmarshal(b, &v)
	return v, err
}
