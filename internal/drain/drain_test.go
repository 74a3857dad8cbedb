package drain

import (
	"context"
	"testing"
	"time"
)

func TestWatch(t *testing.T) {
	for _, tc := range []struct {
		name string
		// attach attaches the notice to the request context; begin starts
		// the drain before (-1), after (1) Watch, or never (0); end cancels
		// the request context instead.
		attach     bool
		begin      int
		end        bool
		wantDone   bool
		wantReason string
	}{
		{name: "drain begins while watching", attach: true, begin: 1, wantDone: true, wantReason: "restart"},
		{name: "drain had begun before", attach: true, begin: -1, wantDone: true, wantReason: "restart"},
		{name: "request ends first", attach: true, end: true, wantDone: true},
		{name: "no drain", attach: true},
		{name: "notice not attached", begin: 1},
		{name: "notice not attached, request ends", begin: 1, end: true, wantDone: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := New()
			req, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tc.attach {
				req = n.Attach(req)
			}
			if tc.begin < 0 {
				n.Begin("restart")
			}
			ctx, stop := Watch(req)
			defer stop()
			if tc.begin > 0 {
				n.Begin("restart")
				n.Begin("second call is ignored")
			}
			if tc.end {
				cancel()
			}
			select {
			case <-ctx.Done():
				if !tc.wantDone {
					t.Fatalf("context ended: %v", context.Cause(ctx))
				}
			case <-time.After(50 * time.Millisecond):
				if tc.wantDone {
					t.Fatal("context still open")
				}
			}
			reason, ok := Reason(ctx)
			if reason != tc.wantReason || ok != (tc.wantReason != "") {
				t.Errorf("Reason = %q, %v; want %q", reason, ok, tc.wantReason)
			}
		})
	}
}

func TestStopReleasesTheWatch(t *testing.T) {
	n := New()
	ctx, stop := Watch(n.Attach(context.Background()))
	stop()
	if ctx.Err() == nil {
		t.Fatal("context open after stop")
	}
	n.Begin("later")
	if reason, ok := Reason(ctx); ok {
		t.Fatalf("a stopped watch reports the drain: %q", reason)
	}
	select {
	case <-n.Done():
	default:
		t.Fatal("Done not closed after Begin")
	}
}
