package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"time"
)

// Command is one command to run: an executable and its arguments, passed
// as an argument vector, never through a shell.
type Command struct {
	// ID is the server's command id (for logging).
	ID string
	// Name is the executable as the server gave it, already checked
	// against the agent's [AllowList].
	Name string
	// Args are the arguments, not including Name.
	Args []string
}

// A Runner executes commands for an [Agent]. The agent checks the
// allow-list, enforces the timeout and cancellation through ctx, limits and
// streams the output; the Runner only runs.
//
// Run blocks until the command has finished. When ctx is done, Run must stop
// the command (and anything it started) promptly and return. It writes the
// command's output to stdout and stderr; the writers never return errors,
// and each is safe to use from its own goroutine. It returns the exit code
// (-1 if the command did not exit normally or did not start) and a non-nil
// error only if the command could not be started or was killed, never for a
// non-zero exit. Run is called from one goroutine per command, concurrently.
type Runner interface {
	Run(ctx context.Context, cmd Command, stdout, stderr io.Writer) (exitCode int, err error)
}

// ExecRunner runs commands as local processes. Each command runs in its own
// process group with the agent's environment and working directory and no
// standard input; when ctx is done the whole group is killed with SIGKILL
// (on systems without process groups, only the process). The zero value is
// ready to use.
type ExecRunner struct {
	// WaitDelay bounds how long Run waits for the command's output pipes
	// to close after the process exited or was killed, for children that
	// escaped the process group; zero means 2s.
	WaitDelay time.Duration
}

// Run implements [Runner].
func (r ExecRunner) Run(ctx context.Context, cmd Command, stdout, stderr io.Writer) (int, error) {
	c := exec.CommandContext(ctx, cmd.Name, cmd.Args...)
	c.Stdout, c.Stderr = stdout, stderr
	c.WaitDelay = r.WaitDelay
	if c.WaitDelay <= 0 {
		c.WaitDelay = 2 * time.Second
	}
	ownProcessGroup(c)
	err := c.Run()
	if c.ProcessState == nil {
		return -1, fmt.Errorf("start %s: %w", cmd.Name, err)
	}
	if errors.Is(err, exec.ErrWaitDelay) {
		// The process exited but something it started kept the output
		// open: the group still has members, so its id is still ours.
		killProcessGroup(c)
	}
	code := c.ProcessState.ExitCode()
	if code == -1 {
		return -1, fmt.Errorf("%s: %s", cmd.Name, c.ProcessState)
	}
	return code, nil
}
