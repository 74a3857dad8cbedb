package agent

import (
	"errors"
	"strings"
	"testing"
)

func TestStreamQueueOrder(t *testing.T) {
	q := newStreamQueue()
	if q.ready() != q.wake {
		t.Error("an empty queue is ready")
	}
	for _, f := range []struct {
		s       string
		control bool
	}{{"data1", false}, {"credit1", true}, {"close1", false}, {"opened2", true}, {"data2", false}} {
		if err := q.push(queuedFrame{b: []byte(f.s), text: f.control}, f.control); err != nil {
			t.Fatal(err)
		}
	}
	if q.ready() != closedChan {
		t.Error("a queue with frames is not ready")
	}
	var got []string
	for f, ok := q.pop(); ok; f, ok = q.pop() {
		got = append(got, string(f.b))
	}
	if s := strings.Join(got, ","); s != "credit1,opened2,data1,close1,data2" {
		t.Errorf("order %s: control messages first, the rest as queued", s)
	}
	q.close()
	if err := q.push(queuedFrame{b: []byte("late")}, false); !errors.Is(err, errSessionEnded) {
		t.Errorf("push after close: %v", err)
	}
}
