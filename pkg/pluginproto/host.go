package pluginproto

import (
	"fmt"
	"io"
	"os/exec"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
)

// NewClientConfig returns the go-plugin configuration for launching cmd as a
// plugin over gRPC. Lines the plugin writes to its stderr go to logger.
// stderr, if non-nil, receives the lines of the plugin's redirected
// os.Stderr and os.Stdout streams (go-plugin's stdio stream, which, unlike
// the raw pipe, survives a re-attach): everything a plugin writes through
// its [LogWriter] while [Serve] runs. Each Write is one or more complete
// lines.
func NewClientConfig(cmd *exec.Cmd, logger hclog.Logger, stderr io.Writer) *plugin.ClientConfig {
	cfg := baseConfig(logger, stderr)
	cfg.Cmd = cmd
	return cfg
}

// NewReattachConfig returns the go-plugin configuration for connecting to
// an already running plugin process described by rc. stderr is as for
// [NewClientConfig]; a re-attached host gets the plugin's logs only from
// that stream. rc must not ask for AutoMTLS or a SecureConfig.
func NewReattachConfig(rc *plugin.ReattachConfig, logger hclog.Logger, stderr io.Writer) *plugin.ClientConfig {
	cfg := baseConfig(logger, stderr)
	cfg.Reattach = rc
	return cfg
}

func baseConfig(logger hclog.Logger, stderr io.Writer) *plugin.ClientConfig {
	gp := &GRPCPlugin{}
	cfg := &plugin.ClientConfig{
		HandshakeConfig:  Handshake,
		Plugins:          plugin.PluginSet{PluginKey: gp},
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		Logger:           logger,
	}
	if stderr != nil {
		gp.stderr = newStdioSink(stderr)
		cfg.SyncStderr = gp.stderr
		cfg.SyncStdout = newStdioSink(stderr)
	}
	return cfg
}

// Dispense connects c (launching the process if needed) and returns the
// plugin behind it.
func Dispense(c *plugin.Client) (Plugin, error) {
	rpc, err := c.Client()
	if err != nil {
		return nil, fmt.Errorf("connect to plugin: %w", err)
	}
	raw, err := rpc.Dispense(PluginKey)
	if err != nil {
		return nil, fmt.Errorf("dispense plugin: %w", err)
	}
	p, ok := raw.(Plugin)
	if !ok {
		return nil, fmt.Errorf("dispense plugin: unexpected type %T", raw)
	}
	return p, nil
}
