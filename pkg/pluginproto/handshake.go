package pluginproto

import (
	"os"

	"github.com/hashicorp/go-plugin"
)

// ProtocolVersion is the version of this contract. The runtime refuses a
// plugin that speaks another version.
const ProtocolVersion = 1

// PluginKey is the name under which the plugin is dispensed.
const PluginKey = "plugin"

// Handshake is shared by the runtime and every plugin. A binary started
// without the magic cookie in its environment was not launched by the runtime.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  ProtocolVersion,
	MagicCookieKey:   "CLIENT_MANAGER_PLUGIN_COOKIE",
	MagicCookieValue: "6f1d3c2a-runtime-plugin-v1",
}

// LaunchedByRuntime reports whether this process was started by the runtime
// (the handshake's magic cookie is present in its environment).
func LaunchedByRuntime() bool {
	return os.Getenv(Handshake.MagicCookieKey) == Handshake.MagicCookieValue
}
