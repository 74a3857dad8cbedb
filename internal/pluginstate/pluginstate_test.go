package pluginstate

import (
	"errors"
	"testing"
	"time"
)

func TestCloneSharesNothing(t *testing.T) {
	s := Snapshot{
		Dependencies: []string{"a"},
		LastExit:     &Exit{Code: 1, Time: time.Now()},
		Health:       Health{Details: map[string]string{"k": "v"}},
	}
	c := s.Clone()
	c.Dependencies[0], c.LastExit.Code, c.Health.Details["k"] = "b", 2, "w"
	if s.Dependencies[0] != "a" || s.LastExit.Code != 1 || s.Health.Details["k"] != "v" {
		t.Fatalf("changing the clone changed the original: %+v", s)
	}
}

func TestStatic(t *testing.T) {
	static := map[State]bool{StateInvalid: true, StateBlocked: true, StateDisabled: true}
	for _, st := range States {
		if st.Static() != static[st] {
			t.Errorf("%s.Static() = %v", st, st.Static())
		}
	}
}

func TestExitString(t *testing.T) {
	for _, tc := range []struct {
		e    Exit
		want string
	}{
		{Exit{Code: 3}, "exited with code 3"},
		{Exit{Code: -1, Signal: "SIGKILL", SignalNumber: 9}, "killed by SIGKILL (signal 9)"},
		{Exit{Code: -1, Unknown: true}, "exited (status unknown: the process was started by an earlier runtime)"},
	} {
		if got := tc.e.String(); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.e, got, tc.want)
		}
	}
}

func TestTransitionError(t *testing.T) {
	var err error = &TransitionError{Plugin: "p", State: StateRunning, Reason: "already running"}
	var te *TransitionError
	if !errors.As(err, &te) || err.Error() != "plugin p is running: already running" {
		t.Fatalf("%v", err)
	}
}
