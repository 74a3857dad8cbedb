package pluginproto

// One-port mode: the runtime can expose a plugin's HTTP API under a path on
// its own port (the manifest's "mount"), through a reverse proxy. The proxy
// strips the mount prefix, removes any incoming header named below, and
// sets them itself, so a plugin can tell the real caller from the proxy.
const (
	// ConfigProxyToken is the Start configuration key carrying a random
	// secret the runtime's proxy sends on every proxied request in
	// HeaderProxyToken. It is absent when the plugin has no mount.
	ConfigProxyToken = "proxy_token"
	// ConfigMount is the Start configuration key carrying the mount path
	// (e.g. "/client-manager"), for plugins that build absolute links.
	ConfigMount = "mount"

	// HeaderProxyToken carries the proxy secret. A plugin trusts
	// HeaderForwardedFor only when this header matches ConfigProxyToken
	// (compare in constant time).
	HeaderProxyToken = "X-Runtime-Proxy-Token"
	// HeaderForwardedFor carries the IP address of the caller as the
	// runtime's proxy saw it (its TCP peer).
	HeaderForwardedFor = "X-Runtime-Forwarded-For"
)
