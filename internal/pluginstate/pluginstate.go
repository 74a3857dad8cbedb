// Package pluginstate holds what the runtime knows about a supervised
// plugin, shared by the supervisor that keeps it and the admin API that
// shows it: the states, a snapshot of one plugin, how its process last
// ended, and the errors of operator actions. It imports nothing of the
// runtime.
package pluginstate

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"
)

// State is where a supervised plugin is in its life.
type State string

// States of a plugin. Invalid, blocked and disabled come from discovery and
// never change while the runtime runs.
const (
	StateStopped    State = "stopped"
	StateStarting   State = "starting"
	StateRunning    State = "running"
	StateStopping   State = "stopping"
	StateRestarting State = "restarting"
	StateFailed     State = "failed"
	StateInvalid    State = "invalid"
	StateBlocked    State = "blocked"
	StateDisabled   State = "disabled"
)

// States lists every state, for reports that count plugins per state.
var States = []State{
	StateStopped, StateStarting, StateRunning, StateStopping, StateRestarting,
	StateFailed, StateInvalid, StateBlocked, StateDisabled,
}

// Static reports whether s is fixed by discovery (invalid, blocked or
// disabled): no operator action applies to such a plugin.
func (s State) Static() bool {
	return s == StateInvalid || s == StateBlocked || s == StateDisabled
}

// Exit describes how a plugin process ended.
type Exit struct {
	// Code is the exit code, -1 if the process was killed by a signal or
	// the status is unknown.
	Code int
	// Unknown is set when the exit status cannot be known: the process
	// was adopted from an earlier runtime, so it is not this runtime's
	// child.
	Unknown bool
	// Signal is the name of the signal that killed the process (e.g.
	// "SIGKILL"), "" if it exited on its own.
	Signal string
	// SignalNumber is the number of that signal, 0 if none.
	SignalNumber int
	Time         time.Time
}

// String describes the exit for humans.
func (e *Exit) String() string {
	if e.Unknown {
		return "exited (status unknown: the process was started by an earlier runtime)"
	}
	if e.Signal != "" {
		return fmt.Sprintf("killed by %s (signal %d)", e.Signal, e.SignalNumber)
	}
	return fmt.Sprintf("exited with code %d", e.Code)
}

// Health is what the plugin's Health RPC last said, and how its latest
// calls failed.
type Health struct {
	// Ready, Status and Details are the last answer; Ready is false from
	// the first failed call on, until a call succeeds again.
	Ready   bool
	Status  string
	Details map[string]string
	// LastError is the error of the latest failed call to this process,
	// "" if none failed.
	LastError string
	// ConsecutiveFailures counts the calls failed since the last that
	// succeeded.
	ConsecutiveFailures int
}

// Snapshot is a consistent copy of a plugin's supervision state.
type Snapshot struct {
	Name         string
	Version      string
	Description  string
	Dependencies []string
	ManifestPath string
	// Mount is where the runtime's port serves the plugin, "" if nowhere.
	Mount string
	State State
	// Reason explains why the plugin is invalid, blocked, disabled or failed.
	Reason string
	// PID is the plugin process id, 0 when no process runs.
	PID         int
	InstanceID  string
	HTTPAddress string
	// StartedAt is when the plugin last became running; zero if it is not
	// running.
	StartedAt time.Time
	// Restarts counts restarts made by the restart policy.
	Restarts  int
	LastExit  *Exit
	LastError string
	Health    Health
}

// Clone returns a deep copy of s: it shares no slice, map or pointer
// with s.
func (s *Snapshot) Clone() Snapshot {
	c := *s
	c.Dependencies = slices.Clone(s.Dependencies)
	if s.LastExit != nil {
		e := *s.LastExit
		c.LastExit = &e
	}
	c.Health.Details = maps.Clone(s.Health.Details)
	return c
}

// ErrUnknownPlugin is returned for a plugin name the runtime does not know.
var ErrUnknownPlugin = errors.New("unknown plugin")

// TransitionError is returned when an operator action does not apply to
// the plugin's current state.
type TransitionError struct {
	Plugin string
	State  State
	Reason string
}

// Error says which plugin is in which state and why the action does not
// apply.
func (e *TransitionError) Error() string {
	return fmt.Sprintf("plugin %s is %s: %s", e.Plugin, e.State, e.Reason)
}
