package agentstream

import (
	"encoding/json"
	"fmt"
	"sync"

	"github.com/home-console/client-manager/pkg/agentproto"
)

// Pipe returns two Muxes connected in memory, for tests without a network:
// server opens streams, agent accepts them (its Opens channel delivers
// each stream_open). Each direction has one goroutine that delivers
// control messages ahead of data frames (stream_close behind the data
// queued before it), JSON-encoding and decoding the control messages as a
// connection would. A protocol violation closes both Muxes with code
// agentproto.StreamErrorProtocol; closing either Mux closes the other (a
// connection ending), with code agentproto.StreamErrorDisconnected, and
// stops the goroutines.
func Pipe(cfg Config) (server, agent *Mux) {
	toAgent, toServer := newLink(), newLink()
	server = New(toAgent, cfg)
	agent = New(toServer, cfg)
	agent.opens = make(chan agentproto.StreamOpen, 64)
	server.onClose = func() {
		toAgent.stop()
		toServer.stop()
		agent.Close(agentproto.StreamErrorDisconnected, "the pipe's server side closed")
	}
	agent.onClose = func() {
		toAgent.stop()
		toServer.stop()
		server.Close(agentproto.StreamErrorDisconnected, "the pipe's agent side closed")
	}
	go toAgent.run(agent, server)
	go toServer.run(server, agent)
	return server, agent
}

// pipeMsg is one queued control message or data frame.
type pipeMsg struct {
	typ  string // "" for a data frame
	data []byte // JSON data, or the frame
}

// link is one direction of a Pipe: a Transport feeding a goroutine.
type link struct {
	mu      sync.Mutex
	cond    *sync.Cond
	control []pipeMsg
	data    []pipeMsg // data frames and stream_close, in order
	stopped bool
}

func newLink() *link {
	l := &link{}
	l.cond = sync.NewCond(&l.mu)
	return l
}

// SendControl implements Transport.
func (l *link) SendControl(typ string, data any) error {
	b, err := json.Marshal(data)
	if err != nil {
		return fmt.Errorf("agentstream pipe: encode %s: %w", typ, err)
	}
	return l.push(pipeMsg{typ: typ, data: b}, typ != agentproto.TypeStreamClose)
}

// SendData implements Transport.
func (l *link) SendData(frame []byte) error {
	return l.push(pipeMsg{data: frame}, false)
}

func (l *link) push(msg pipeMsg, control bool) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopped {
		return ErrClosed
	}
	if control {
		l.control = append(l.control, msg)
	} else {
		l.data = append(l.data, msg)
	}
	l.cond.Signal()
	return nil
}

func (l *link) stop() {
	l.mu.Lock()
	l.stopped = true
	l.control, l.data = nil, nil
	l.cond.Broadcast()
	l.mu.Unlock()
}

// next waits for the next message, control first; false once stopped.
func (l *link) next() (pipeMsg, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for !l.stopped && len(l.control) == 0 && len(l.data) == 0 {
		l.cond.Wait()
	}
	switch {
	case l.stopped:
		return pipeMsg{}, false
	case len(l.control) > 0:
		msg := l.control[0]
		l.control = l.control[1:]
		return msg, true
	default:
		msg := l.data[0]
		l.data = l.data[1:]
		return msg, true
	}
}

// run delivers messages to dst until the link stops; src is the sending
// Mux, closed with dst on a protocol violation.
func (l *link) run(dst, src *Mux) {
	for {
		msg, ok := l.next()
		if !ok {
			return
		}
		if err := deliver(dst, msg); err != nil {
			dst.Close(agentproto.StreamErrorProtocol, err.Error())
			src.Close(agentproto.StreamErrorProtocol, err.Error())
			return
		}
	}
}

// deliver hands one message to dst as its connection's reader would.
func deliver(dst *Mux, msg pipeMsg) error {
	var v any
	var err error
	switch msg.typ {
	case "":
		return dst.HandleData(msg.data)
	case agentproto.TypeStreamOpen:
		var open agentproto.StreamOpen
		if err := json.Unmarshal(msg.data, &open); err != nil {
			return err
		}
		if dst.opens == nil {
			return fmt.Errorf("stream_open sent to the server side")
		}
		select {
		case dst.opens <- open:
		case <-dst.done:
		}
		return nil
	case agentproto.TypeStreamOpened:
		v, err = decodeAs[agentproto.StreamOpened](msg.data)
	case agentproto.TypeStreamCredit:
		v, err = decodeAs[agentproto.StreamCredit](msg.data)
	case agentproto.TypeStreamClose:
		v, err = decodeAs[agentproto.StreamClose](msg.data)
	case agentproto.TypeTerminalResize:
		v, err = decodeAs[agentproto.TerminalResize](msg.data)
	case agentproto.TypeTerminalSignal:
		v, err = decodeAs[agentproto.TerminalSignal](msg.data)
	default:
		return fmt.Errorf("unknown message type %q", msg.typ)
	}
	if err != nil {
		return err
	}
	return dst.Handle(v)
}

func decodeAs[T any](b []byte) (T, error) {
	var v T
	err := json.Unmarshal(b, &v)
	return v, err
}
