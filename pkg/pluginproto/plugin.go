package pluginproto

import "context"

// Plugin is implemented by every plugin. The runtime calls it over gRPC; the
// plugin process serves it through [Serve]. Implementations must be safe for
// concurrent use: the host may call Health while Start or Stop is running.
type Plugin interface {
	// Describe returns facts about the plugin and this process.
	Describe(ctx context.Context) (Description, error)
	// Start begins serving with cfg and returns the HTTP address it serves
	// on ("" if it serves no HTTP). It returns after the listener is bound.
	Start(ctx context.Context, cfg map[string]string) (httpAddr string, err error)
	// Stop drains and stops serving. It must return before ctx's deadline.
	Stop(ctx context.Context, reason string) error
	// Health reports readiness.
	Health(ctx context.Context) (Health, error)
}

// Description is what [Plugin.Describe] returns.
type Description struct {
	Name        string
	Version     string
	Description string
	// InstanceID is unique for each process start.
	InstanceID string
	// PID is the plugin process id.
	PID int
}

// Health is what [Plugin.Health] returns.
type Health struct {
	Ready   bool
	Status  string
	Details map[string]string
}
