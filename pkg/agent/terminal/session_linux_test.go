//go:build linux

package terminal

import (
	"errors"
	"io"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestEchoRoundTrip(t *testing.T) {
	tm := openTerm(t, newManager(t, shellConfig()), OpenRequest{})
	tm.send(t, "echo hello-$((40+2))\n")
	tm.expect(t, `hello-42`)
}

func TestSize(t *testing.T) {
	tm := openTerm(t, newManager(t, shellConfig()), OpenRequest{Cols: 100, Rows: 30})
	tm.send(t, "stty size\n")
	tm.expect(t, `\b30 100\b`)
	if err := tm.Resize(123, 45); err != nil {
		t.Fatalf("Resize: %v", err)
	}
	tm.send(t, "stty size\n")
	tm.expect(t, `\b45 123\b`)
	if err := tm.Resize(0, 10); !errors.Is(err, ErrBadRequest) {
		t.Errorf("Resize(0, 10) = %v, want ErrBadRequest", err)
	}
}

func TestInterruptForeground(t *testing.T) {
	for _, tc := range []struct {
		name      string
		interrupt func(*term) error
	}{
		{"ctrl-c byte", func(tm *term) error { _, err := tm.Write([]byte{0x03}); return err }},
		{"Signal", func(tm *term) error { return tm.Signal(syscall.SIGINT) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tm := openTerm(t, newManager(t, shellConfig()), OpenRequest{})
			tm.send(t, "sleep 100\n")
			tm.waitForeground(t, false)
			start := time.Now()
			if err := tc.interrupt(tm); err != nil {
				t.Fatalf("interrupt: %v", err)
			}
			tm.waitForeground(t, true)
			t.Logf("sleep interrupted in %v", time.Since(start))
			tm.send(t, "echo rc=$? alive-$((1+1))\n")
			tm.expect(t, `rc=130 alive-2`)
		})
	}
}

func TestExitCode(t *testing.T) {
	tm := openTerm(t, newManager(t, shellConfig()), OpenRequest{})
	tm.send(t, "echo bye; exit 3\n")
	code, err := waitDone(t, tm.Session)
	if code != 3 || err != nil {
		t.Fatalf("Wait = %d, %v; want 3, nil", code, err)
	}
	select {
	case err := <-tm.readDone:
		if err != nil {
			t.Errorf("reading to the end: %v", err)
		}
	case <-time.After(waitLong):
		t.Fatal("Read never reached the end after the shell exited")
	}
	tm.expect(t, `\bbye\r\n`) // the output written just before the exit
	if _, err := tm.Write([]byte("x")); !errors.Is(err, ErrClosed) {
		t.Errorf("Write after the exit: %v, want ErrClosed", err)
	}
}

// startFamily starts, in the session, background jobs (one ignoring
// SIGHUP), a grandchild in a job's group, and a foreground command; it
// returns their pids.
func startFamily(t *testing.T, tm *term) []int {
	t.Helper()
	tm.send(t, "sleep 1000 & echo B1=$!\n")
	tm.send(t, "sh -c 'sleep 1001 & echo GC=$!; wait' & echo B2=$!\n")
	tm.send(t, "(trap '' HUP; exec sleep 1003) & echo H=$!\n")
	pids := []int{tm.expectPID(t, "B1"), tm.expectPID(t, "B2"), tm.expectPID(t, "GC"), tm.expectPID(t, "H")}
	tm.send(t, "sleep 1002\n")
	pids = append(pids, tm.waitForeground(t, false), tm.pid)
	for _, pid := range pids {
		if !alive(pid) {
			t.Fatalf("process %d not running before the session ends", pid)
		}
	}
	return pids
}

func checkGone(t *testing.T, pids []int) {
	t.Helper()
	for _, pid := range pids {
		if alive(pid) {
			t.Errorf("process %d still running after the session ended", pid)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

func TestCloseKillsWholeSession(t *testing.T) {
	tm := openTerm(t, newManager(t, shellConfig()), OpenRequest{})
	pids := startFamily(t, tm)
	start := time.Now()
	done := make(chan struct{})
	for range 2 { // concurrent Close calls both block until the end
		go func() { _ = tm.Close(); done <- struct{}{} }()
	}
	<-done
	<-done
	t.Logf("Close took %v", time.Since(start))
	checkGone(t, pids)
	if _, err := tm.Wait(); !errors.Is(err, ErrClosed) {
		t.Errorf("Wait after Close: %v, want ErrClosed", err)
	}
	if err := tm.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if n, err := tm.Read(make([]byte, 8)); n != 0 || err != io.EOF {
		t.Errorf("Read after Close = %d, %v; want 0, EOF", n, err)
	}
	if _, err := tm.Write([]byte("x")); !errors.Is(err, ErrClosed) {
		t.Errorf("Write after Close: %v, want ErrClosed", err)
	}
	if err := tm.Signal(syscall.SIGINT); !errors.Is(err, ErrClosed) {
		t.Errorf("Signal after Close: %v, want ErrClosed", err)
	}
}

func TestExitKillsLeftovers(t *testing.T) {
	tm := openTerm(t, newManager(t, shellConfig()), OpenRequest{})
	tm.send(t, "(trap '' HUP; exec sleep 1003) & echo H=$!\n")
	pid := tm.expectPID(t, "H")
	tm.send(t, "exit 0\n")
	if code, err := waitDone(t, tm.Session); code != 0 || err != nil {
		t.Fatalf("Wait = %d, %v; want 0, nil", code, err)
	}
	checkGone(t, []int{pid})
}

func TestIdleTimeout(t *testing.T) {
	cfg := shellConfig()
	cfg.IdleTimeout = 500 * time.Millisecond
	m := newManager(t, cfg)

	busy := openTerm(t, m, OpenRequest{})
	for range 15 { // 1.5 s of keystrokes, each within the timeout
		busy.send(t, " ")
		time.Sleep(100 * time.Millisecond)
	}
	select {
	case <-busy.Done():
		t.Fatal("a session with input every 100 ms ended by the 500 ms idle timeout")
	default:
	}

	idle := openTerm(t, m, OpenRequest{})
	pids := startFamily(t, idle)
	start := time.Now()
	if _, err := waitDone(t, idle.Session); !errors.Is(err, ErrIdleTimeout) {
		t.Fatalf("Wait = %v, want ErrIdleTimeout", err)
	}
	t.Logf("idle session ended %v after its last output", time.Since(start))
	checkGone(t, pids)
	if codeOf(ErrIdleTimeout) != "terminal_idle_timeout" {
		t.Errorf("code %q", codeOf(ErrIdleTimeout))
	}
}

func TestEnvironment(t *testing.T) {
	t.Setenv("CM_TEST_SECRET", "hunter2")
	tm := openTerm(t, newManager(t, shellConfig()), OpenRequest{Term: "vt100"})
	tm.send(t, "env | sort | tr '\\n' ' '; echo END\n")
	got := tm.expect(t, `(HOME=.*) END`)[1]
	for _, want := range []string{"TERM=vt100", "PATH=" + os.Getenv("PATH"), "SHELL=/bin/sh", "USER=", "HOME="} {
		if !strings.Contains(got, want) {
			t.Errorf("environment %q lacks %q", got, want)
		}
	}
	if strings.Contains(got, "CM_TEST_SECRET") {
		t.Errorf("the agent's environment leaked into the shell: %q", got)
	}
}
