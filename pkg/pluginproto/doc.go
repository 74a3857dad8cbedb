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
//		if pluginproto.LaunchedByRuntime() {
//			pluginproto.Serve(&myPlugin{})
//			return
//		}
//		// Optional: run standalone.
//	}
//
// Rules a plugin must follow:
//
//   - Write nothing to stdout before Serve: go-plugin reads the handshake line
//     from it. Log to stderr; the runtime captures stderr and logs each line
//     under the plugin's name.
//   - Start returns once the plugin's HTTP listener (if any) is bound, with the
//     address it listens on. Health reports ready only when it can serve.
//   - Stop drains in-flight work and returns before the context deadline.
//     After Stop returns, Serve's process should exit; [Serve] does this for
//     you when the plugin is stopped by the host.
//   - Ignore SIGPIPE (Serve does) so the process survives the runtime dying
//     and its stderr pipe breaking.
//
// Describe must return a fresh InstanceID for each process start; the runtime
// uses it to verify a process it re-attaches to after its own restart.
//
// # Manifest
//
// The runtime discovers plugins from plugins/<dir>/plugin.json. See the
// project README for the manifest fields.
//
// # Host side
//
// [NewClientConfig] builds the go-plugin client configuration the runtime
// uses; [Dispense] returns a [Plugin] backed by the gRPC connection.
package pluginproto
