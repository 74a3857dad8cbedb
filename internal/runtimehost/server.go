package runtimehost

import (
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/home-console/client-manager/internal/adminapi"
	"github.com/home-console/client-manager/internal/manifest"
	"github.com/home-console/client-manager/internal/pluginstate"
	"github.com/home-console/client-manager/internal/proxy"
	"github.com/home-console/client-manager/internal/supervisor"
	"github.com/home-console/client-manager/internal/version"
)

// newServer returns the HTTP server of the runtime's port: the plugins'
// mounts, and the admin API for every other path, all behind the Host
// allow-list.
func newServer(group *supervisor.Group, set *manifest.Set, cfg Config, g guards, log *slog.Logger) *http.Server {
	admin := adminapi.New(group, adminapi.Config{Token: cfg.AdminToken, Version: version.Get().Version, StartedAt: time.Now(),
		Origins: g.origins}, log)
	var mounts []proxy.Mount
	for _, e := range set.Entries {
		if e.Runnable() && e.Manifest.Mount != "" {
			mounts = append(mounts, proxy.Mount{Path: e.Manifest.Mount, Plugin: e.Name})
			log.Info("plugin mounted", "plugin", e.Name, "mount", e.Manifest.Mount)
		}
	}
	srv := &http.Server{
		Handler:        g.hosts.Guard(proxy.New(proxy.Config{Mounts: mounts, Resolve: resolver(group), Next: admin, Log: log})),
		MaxHeaderBytes: 64 << 10,
		ErrorLog:       slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	cfg.Timeouts.Apply(srv)
	return srv
}

// resolver returns the proxy's view of where each plugin serves now.
func resolver(group *supervisor.Group) proxy.Resolver {
	return func(name string) (proxy.Upstream, error) {
		sup, err := group.Get(name)
		if err != nil {
			return proxy.Upstream{}, err
		}
		addr, token, ok := sup.Upstream()
		if !ok {
			if st := sup.Snapshot().State; st != pluginstate.StateRunning {
				return proxy.Upstream{}, fmt.Errorf("plugin %s is %s", name, st)
			}
			return proxy.Upstream{}, fmt.Errorf("plugin %s serves no HTTP", name)
		}
		return proxy.Upstream{Addr: addr, Token: token}, nil
	}
}
