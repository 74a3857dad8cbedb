package events

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/home-console/client-manager/internal/fleet"
)

func TestPublishFansOutAndDropsForSlowSubscribers(t *testing.T) {
	b := New()
	fast := b.Subscribe(10)
	slow := b.Subscribe(1)
	defer fast.Close()
	defer slow.Close()

	for i := 0; i < 3; i++ {
		b.Publish(CommandFinished{CommandID: "c", Status: fleet.StatusCompleted})
	}
	for want := uint64(1); want <= 3; want++ {
		if e := <-fast.C; e.Seq != want || e.Time.IsZero() || e.Payload.(CommandFinished).CommandID != "c" {
			t.Fatalf("fast got %+v, want seq %d with time and payload", e, want)
		}
	}
	if e := <-slow.C; e.Seq != 1 {
		t.Fatalf("slow got seq %d, want 1", e.Seq)
	}
	if d := slow.Dropped(); d != 2 {
		t.Fatalf("slow dropped %d, want 2", d)
	}
	if d := slow.Dropped(); d != 0 {
		t.Fatalf("Dropped did not reset: %d", d)
	}
}

func TestClosedSubscriptionGetsNothing(t *testing.T) {
	b := New()
	s := b.Subscribe(1)
	s.Close()
	b.Publish(AgentConnected{AgentID: "a"})
	select {
	case e := <-s.C:
		t.Fatalf("closed subscription received %+v", e)
	default:
	}
}

// TestWireForm pins the JSON of every event type: the format docs/api.md
// documents for GET /api/events, unchanged since the payloads were maps.
func TestWireForm(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	const head = `{"seq":7,"type":`
	const tm = `"time":"2026-01-02T03:04:05.000000006Z"`
	for _, tc := range []struct {
		payload Payload
		want    string
	}{
		{AgentConnected{AgentID: "agt_1", Hostname: "box", RemoteAddr: "10.0.0.1:5000", Version: "1.2"},
			head + `"client.connected",` + tm + `,"client_id":"agt_1","data":{"hostname":"box","remote_addr":"10.0.0.1:5000","version":"1.2"}}`},
		{AgentDisconnected{AgentID: "agt_1", Code: 1001, Reason: "server shutting down", RemoteAddr: "10.0.0.1:5000"},
			head + `"client.disconnected",` + tm + `,"client_id":"agt_1","data":{"code":1001,"reason":"server shutting down","remote_addr":"10.0.0.1:5000"}}`},
		{AgentEnrolled{AgentID: "agt_1", Name: "box", TokenID: "tok_1"},
			head + `"client.enrolled",` + tm + `,"client_id":"agt_1","data":{"name":"box","token_id":"tok_1"}}`},
		{AgentRevoked{AgentID: "agt_1", By: "admin"},
			head + `"client.revoked",` + tm + `,"client_id":"agt_1","data":{"by":"admin"}}`},
		{CommandQueued{AgentID: "agt_1", CommandID: "cmd_1"},
			head + `"command.queued",` + tm + `,"client_id":"agt_1","command_id":"cmd_1"}`},
		{CommandDispatched{AgentID: "agt_1", CommandID: "cmd_1", Attempt: 2},
			head + `"command.dispatched",` + tm + `,"client_id":"agt_1","command_id":"cmd_1","data":{"attempt":2}}`},
		{CommandRunning{AgentID: "agt_1", CommandID: "cmd_1"},
			head + `"command.running",` + tm + `,"client_id":"agt_1","command_id":"cmd_1"}`},
		{CommandOutput{AgentID: "agt_1", CommandID: "cmd_1", Data: "hi\n", Seq: 3, Stream: "stdout"},
			head + `"command.output",` + tm + `,"client_id":"agt_1","command_id":"cmd_1","data":{"data":"hi\n","seq":3,"stream":"stdout"}}`},
		{CommandFinished{AgentID: "agt_1", CommandID: "cmd_1", Status: fleet.StatusCompleted},
			head + `"command.finished",` + tm + `,"client_id":"agt_1","command_id":"cmd_1","data":{"error":"","status":"completed"}}`},
		{CommandFinished{AgentID: "agt_1", CommandID: "cmd_1", Status: fleet.StatusTimedOut, Error: "no result within 30s"},
			head + `"command.finished",` + tm + `,"client_id":"agt_1","command_id":"cmd_1","data":{"error":"no result within 30s","status":"timed_out"}}`},
	} {
		got, err := json.Marshal(Event{Seq: 7, Time: at, Payload: tc.payload})
		if err != nil {
			t.Fatalf("%T: %v", tc.payload, err)
		}
		if string(got) != tc.want {
			t.Errorf("%T:\n got %s\nwant %s", tc.payload, got, tc.want)
		}
	}
}

func TestLaggedClosesAtTheFirstLoss(t *testing.T) {
	b := New()
	s := b.Subscribe(2)
	defer s.Close()
	lagged := func() bool {
		select {
		case <-s.Lagged():
			return true
		default:
			return false
		}
	}
	for i, want := range []bool{false, false, true, true} {
		b.Publish(AgentConnected{AgentID: "a"})
		if got := lagged(); got != want {
			t.Fatalf("after %d events in a buffer of 2: lagged %v, want %v", i+1, got, want)
		}
	}
	if d := s.Dropped(); d != 2 {
		t.Errorf("dropped %d, want 2", d)
	}
}
