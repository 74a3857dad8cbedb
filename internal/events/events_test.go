package events

import "testing"

func TestPublishFansOutAndDropsForSlowSubscribers(t *testing.T) {
	b := New()
	fast := b.Subscribe(10)
	slow := b.Subscribe(1)
	defer fast.Close()
	defer slow.Close()

	for i := 0; i < 3; i++ {
		b.Publish(Event{Type: CommandFinished, CommandID: "c"})
	}
	for want := uint64(1); want <= 3; want++ {
		if e := <-fast.C; e.Seq != want || e.Time.IsZero() {
			t.Fatalf("fast got %+v, want seq %d with time", e, want)
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
	b.Publish(Event{Type: ClientConnected})
	select {
	case e := <-s.C:
		t.Fatalf("closed subscription received %+v", e)
	default:
	}
}
