package adminapi

import (
	"time"

	"github.com/home-console/client-manager/internal/pluginstate"
)

// pluginJSON is a plugin as the admin API shows it.
type pluginJSON struct {
	Name        string            `json:"name"`
	Version     string            `json:"version"`
	Description string            `json:"description"`
	State       pluginstate.State `json:"state"`
	// Reason explains an invalid, blocked, disabled or failed state.
	Reason        string     `json:"reason"`
	PID           int        `json:"pid"`
	HTTPAddress   string     `json:"http_address"`
	StartedAt     *string    `json:"started_at"`
	UptimeSeconds int64      `json:"uptime_seconds"`
	Restarts      int        `json:"restarts"`
	LastExit      *exitJSON  `json:"last_exit"`
	LastError     string     `json:"last_error"`
	Health        healthJSON `json:"health"`
	Dependencies  []string   `json:"dependencies"`
	InstanceID    string     `json:"instance_id"`
	Manifest      string     `json:"manifest"`
	// Mount is where the runtime's port serves the plugin, null if
	// nowhere.
	Mount *string `json:"mount"`
}

// exitJSON is how a plugin process last ended.
type exitJSON struct {
	// Code is the exit code, -1 when a signal killed the process, null
	// when the status is unknown (the process was adopted from an earlier
	// runtime, so it was not the runtime's child).
	Code *int `json:"code"`
	// Signal names the signal that killed the process ("SIGKILL"), or is
	// null.
	Signal       *string `json:"signal"`
	SignalNumber int     `json:"signal_number"`
	Time         string  `json:"time"`
}

// healthJSON is the plugin's health: its last Health answer, and how its
// latest calls failed.
type healthJSON struct {
	Ready               bool              `json:"ready"`
	Status              string            `json:"status"`
	Details             map[string]string `json:"details"`
	LastError           string            `json:"last_error"`
	ConsecutiveFailures int               `json:"consecutive_failures"`
}

func toJSON(s pluginstate.Snapshot, now time.Time) pluginJSON {
	p := pluginJSON{
		Name:        s.Name,
		Version:     s.Version,
		Description: s.Description,
		State:       s.State,
		Reason:      s.Reason,
		PID:         s.PID,
		HTTPAddress: s.HTTPAddress,
		Restarts:    s.Restarts,
		LastError:   s.LastError,
		Health: healthJSON{Ready: s.Health.Ready, Status: s.Health.Status, Details: s.Health.Details,
			LastError: s.Health.LastError, ConsecutiveFailures: s.Health.ConsecutiveFailures},
		Dependencies: s.Dependencies,
		InstanceID:   s.InstanceID,
		Manifest:     s.ManifestPath,
	}
	if p.Dependencies == nil {
		p.Dependencies = []string{}
	}
	if p.Health.Details == nil {
		p.Health.Details = map[string]string{}
	}
	if !s.StartedAt.IsZero() {
		t := s.StartedAt.UTC().Format(time.RFC3339)
		p.StartedAt = &t
		p.UptimeSeconds = int64(now.Sub(s.StartedAt).Seconds())
	}
	if s.Mount != "" {
		p.Mount = &s.Mount
	}
	if e := s.LastExit; e != nil {
		p.LastExit = &exitJSON{SignalNumber: e.SignalNumber, Time: e.Time.UTC().Format(time.RFC3339)}
		if !e.Unknown {
			p.LastExit.Code = &e.Code
		}
		if e.Signal != "" {
			p.LastExit.Signal = &e.Signal
		}
	}
	return p
}
