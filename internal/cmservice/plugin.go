package cmservice

import (
	"context"
	"os"
	"strconv"

	"github.com/home-console/client-manager/internal/fleet"
	"github.com/home-console/client-manager/internal/version"
	"github.com/home-console/client-manager/pkg/pluginproto"
)

// Plugin exposes a Service to the runtime through the plugin contract.
type Plugin struct {
	Service *Service
}

var _ pluginproto.Plugin = (*Plugin)(nil)

// Describe implements [pluginproto.Plugin].
func (p *Plugin) Describe(context.Context) (pluginproto.Description, error) {
	return pluginproto.Description{
		Name:        "client_manager",
		Version:     version.Get().Version,
		Description: "Remote agents over WebSocket and an operator REST API",
		InstanceID:  p.Service.InstanceID(),
		PID:         os.Getpid(),
	}, nil
}

// Start implements [pluginproto.Plugin]. The configuration comes from the
// environment; of cfg only the one-port-mode proxy token is used.
func (p *Plugin) Start(ctx context.Context, cfg map[string]string) (string, error) {
	if tok := cfg[pluginproto.ConfigProxyToken]; tok != "" {
		p.Service.TrustProxy(tok)
	}
	return p.Service.Start(ctx)
}

// Stop implements [pluginproto.Plugin].
func (p *Plugin) Stop(ctx context.Context, reason string) error {
	return p.Service.Stop(ctx, reason)
}

// Health implements [pluginproto.Plugin]. Ready follows the service's
// state only: a store that refuses writes is reported in the "store"
// detail (its reason; "ok" otherwise), not as a failure, since restarting
// the plugin would not free the disk.
func (p *Plugin) Health(context.Context) (pluginproto.Health, error) {
	st := p.Service.State()
	store := "ok"
	if err := p.Service.storeWritable(); err != nil {
		store = fleet.MessageOf(err)
	}
	return pluginproto.Health{
		Ready:  st == StateReady,
		Status: string(st),
		Details: map[string]string{
			"addr":             p.Service.Addr(),
			"instance_id":      p.Service.InstanceID(),
			"agents_connected": strconv.Itoa(p.Service.agentsConnected()),
			"store":            store,
		},
	}, nil
}
