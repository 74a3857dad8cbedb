// Package pluginproto is the public contract between the runtime and its
// plugins. A plugin is a separate executable that the runtime launches and
// supervises through hashicorp/go-plugin over gRPC.
//
// # Writing a plugin
//
// Implement [Plugin] and hand it to [Serve] from main:
//
//	type myPlugin struct{ /* ... */ }
//
//	func (p *myPlugin) Describe(ctx context.Context) (pluginproto.Description, error) { ... }
//	func (p *myPlugin) Start(ctx context.Context, cfg map[string]string) (string, error) { ... }
//	func (p *myPlugin) Stop(ctx context.Context, reason string) error { ... }
//	func (p *myPlugin) Health(ctx context.Context) (pluginproto.Health, error) { ... }
//
//	func main() {
//		logs := pluginproto.NewLogWriter(os.Stderr)
//		log := slog.New(slog.NewTextHandler(logs, nil))
//		p := &myPlugin{log: log}
//		if pluginproto.LaunchedByRuntime() {
//			pluginproto.Serve(p, pluginproto.WithLogWriter(logs))
//			return
//		}
//		// Optional: run standalone.
//	}
//
// Rules a plugin must follow:
//
//   - Write nothing to stdout before Serve: go-plugin reads the handshake line
//     from it. Log through a [LogWriter] handed to Serve with
//     [WithLogWriter]: the runtime logs each line under the plugin's name,
//     logging never blocks the plugin, and the logs still reach a runtime
//     that re-attached to the plugin after its own restart (the raw stderr
//     pipe dies with the runtime that launched the process).
//   - Start returns once the plugin's HTTP listener (if any) is bound, with the
//     address it listens on. Health reports ready only when it can serve.
//   - Stop drains in-flight work and returns before the context deadline.
//     After Stop returns, Serve's process should exit; [Serve] does this for
//     you when the plugin is stopped by the host.
//   - Ignore SIGPIPE (Serve does) so the process survives the runtime dying
//     and its stderr pipe breaking.
//
// Describe must return a fresh InstanceID for each process start; the runtime
// uses it to verify a process it re-attaches to after its own restart. A
// re-attaching runtime calls Start again with the configuration it gave
// the process originally: Start on a plugin that is already serving must
// return its current address.
//
// # One-port mode
//
// A plugin whose manifest has a "mount" is also served through the
// runtime's own port under that path, by a reverse proxy. Start's
// configuration then carries [ConfigMount] and [ConfigProxyToken]; see
// [HeaderForwardedFor] for how to tell the proxy's callers apart.
//
// # Manifest
//
// The runtime discovers plugins from <plugins dir>/<dir>/plugin.json. The
// file is strict JSON: an unknown field, a wrong type or trailing data makes
// the plugin invalid (with the reason in the admin API) while every other
// plugin runs.
//
//	{
//	  "name": "my_plugin",              // required: ^[a-z][a-z0-9_-]{0,62}$, unique
//	  "version": "1.2.0",               // required: semantic version
//	  "description": "what it does",
//	  "dependencies": ["client_manager"], // started before, stopped after this one
//	  "command": "../../bin/my-plugin", // required: executable, relative to this file
//	  "args": ["--flag"],
//	  "env": {"MY_PLUGIN_PORT": "0"},   // added to (and overriding) the runtime's environment
//	  "enabled": true,
//	  "restart": {"policy": "always",   // always | on-failure | never
//	              "initial_backoff": "250ms", "max_backoff": "30s",
//	              "max_restarts": 5, "window": "60s"},
//	  "stop_timeout": "10s",            // Stop's deadline, then SIGTERM, then SIGKILL to the process group
//	  "sha256": "…",                    // optional: checked before every launch
//	  "mount": "/my-plugin"             // optional: one-port mode path on the runtime's port
//	}
//
// (Comments are for this page only; JSON has none.) The plugin runs in its
// own process group with the runtime's working directory and environment,
// minus the runtime's own secrets.
//
// # Host side
//
// [NewClientConfig] builds the go-plugin client configuration the runtime
// uses to launch a plugin, [NewReattachConfig] the one to connect to a
// plugin process an earlier runtime launched; [Dispense] returns a [Plugin]
// backed by the gRPC connection.
package pluginproto
