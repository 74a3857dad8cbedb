// Package drain tells long-lived responses (the event stream now,
// terminals and file transfers later) that their server has begun to
// drain, so that they end at once instead of holding the drain until its
// deadline.
//
// A server makes one [Notice], attaches it to every request's context
// (http.Server.BaseContext returning [Notice.Attach] of a background
// context) and calls [Notice.Begin] when it starts to drain. A handler that
// may run for long derives its context with [Watch]: that context ends
// when the request does or when the drain begins, whichever comes first,
// and [Reason] then tells which, and why the server drains. Short
// requests ignore the notice and finish normally within the drain.
package drain

import (
	"context"
	"errors"
	"sync"
)

// drainError is the cause of a context that [Watch] ended because the
// drain began; it carries the reason given to Begin.
type drainError struct{ reason string }

func (e *drainError) Error() string { return "server draining: " + e.reason }

// Notice is one server's drain signal. Its methods are safe for
// concurrent use. The zero value is not usable; call New.
type Notice struct {
	ctx    context.Context
	cancel context.CancelCauseFunc
	once   sync.Once
}

// New returns a notice whose drain has not begun.
func New() *Notice {
	ctx, cancel := context.WithCancelCause(context.Background())
	return &Notice{ctx: ctx, cancel: cancel}
}

// Begin starts the drain: every context from [Watch] over this notice ends
// now, and every later one ends at once. reason says why ("stopped by the
// runtime", "signal") and is what [Reason] returns. Only the first call
// has an effect; it never blocks.
func (n *Notice) Begin(reason string) {
	n.once.Do(func() { n.cancel(&drainError{reason: reason}) })
}

// Done is closed when the drain has begun.
func (n *Notice) Done() <-chan struct{} { return n.ctx.Done() }

type noticeKey struct{}

// Attach returns ctx carrying n, for [Watch] to find.
func (n *Notice) Attach(ctx context.Context) context.Context {
	return context.WithValue(ctx, noticeKey{}, n)
}

// Watch returns a context that ends when ctx ends or when the drain of the
// notice attached to ctx begins. Without a notice it ends with ctx only.
// Call stop when done with it, to release its resources.
func Watch(ctx context.Context) (watched context.Context, stop context.CancelFunc) {
	wctx, cancel := context.WithCancelCause(ctx)
	n, _ := ctx.Value(noticeKey{}).(*Notice)
	if n == nil {
		return wctx, func() { cancel(context.Canceled) }
	}
	unhook := context.AfterFunc(n.ctx, func() { cancel(context.Cause(n.ctx)) })
	return wctx, func() {
		unhook()
		cancel(context.Canceled)
	}
}

// Reason reports whether ctx (from [Watch]) ended because the drain began,
// and the reason given to [Notice.Begin].
func Reason(ctx context.Context) (string, bool) {
	var e *drainError
	if errors.As(context.Cause(ctx), &e) {
		return e.reason, true
	}
	return "", false
}
