package sim

import (
	"context"
	"io"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/home-console/client-manager/pkg/agent"
)

// Runner is an [agent.Runner] that answers without spawning processes, so
// that thousands of simulated agents are cheap:
//
//	echo ARGS...  prints ARGS joined by spaces, exit 0
//	true / false  exit 0 / exit 1
//	sleep SECS    waits (honouring cancel and timeout), exit 0
//	anything else prints "simulated NAME", exit 0
//
// It counts executions per command id, so a load or chaos test can prove
// that no command ran twice (ids are unique across agents). It is safe for
// concurrent use.
type Runner struct {
	handled    atomic.Int64
	duplicates atomic.Int64
	seen       sync.Map // command id -> struct{}
}

// Handled returns how many commands Run has executed.
func (r *Runner) Handled() int64 { return r.handled.Load() }

// Duplicates returns how many executions repeated a command id that had
// already run.
func (r *Runner) Duplicates() int64 { return r.duplicates.Load() }

// Run implements agent.Runner.
func (r *Runner) Run(ctx context.Context, cmd agent.Command, stdout, _ io.Writer) (int, error) {
	r.handled.Add(1)
	if _, again := r.seen.LoadOrStore(cmd.ID, struct{}{}); again {
		r.duplicates.Add(1)
	}
	switch cmd.Name {
	case "echo":
		io.WriteString(stdout, strings.Join(cmd.Args, " ")+"\n")
	case "true":
	case "false":
		return 1, nil
	case "sleep":
		return sleep(ctx, cmd.Args)
	default:
		io.WriteString(stdout, "simulated "+cmd.Name+"\n")
	}
	return 0, nil
}

func sleep(ctx context.Context, args []string) (int, error) {
	var secs float64
	if len(args) > 0 {
		secs, _ = strconv.ParseFloat(args[0], 64)
	}
	t := time.NewTimer(time.Duration(secs * float64(time.Second)))
	defer t.Stop()
	select {
	case <-t.C:
		return 0, nil
	case <-ctx.Done():
		return -1, context.Cause(ctx)
	}
}
