package pluginproto

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/home-console/client-manager/pkg/pluginproto/proto"
)

// GRPCPlugin adapts a [Plugin] to go-plugin's gRPC transport. The plugin
// side sets Impl; the host side leaves it nil. [Serve] and
// [NewClientConfig] build the GRPCPlugin they need.
type GRPCPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	Impl Plugin

	// logs is the plugin's log writer, attached on the first call.
	logs *LogWriter
	// stderr is the host's sink of the plugin's stderr stream.
	stderr *stdioSink
}

// GRPCServer registers Impl on the plugin's gRPC server.
func (p *GRPCPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	proto.RegisterPluginServer(s, &grpcServer{impl: p.Impl, logs: p.logs})
	return nil
}

// GRPCClient returns a [Plugin] that calls the plugin process over conn.
func (p *GRPCPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, conn *grpc.ClientConn) (any, error) {
	return &grpcClient{client: proto.NewPluginClient(conn), stderr: p.stderr}, nil
}

// grpcClient is the host's view of a plugin.
type grpcClient struct {
	client proto.PluginClient
	stderr *stdioSink
}

func (c *grpcClient) Describe(ctx context.Context) (Description, error) {
	r, err := c.client.Describe(ctx, &proto.DescribeRequest{})
	if err != nil {
		return Description{}, fmt.Errorf("describe: %w", err)
	}
	return Description{
		Name:        r.GetName(),
		Version:     r.GetVersion(),
		Description: r.GetDescription(),
		InstanceID:  r.GetInstanceId(),
		PID:         int(r.GetPid()),
	}, nil
}

func (c *grpcClient) Start(ctx context.Context, cfg map[string]string) (string, error) {
	r, err := c.client.Start(ctx, &proto.StartRequest{Config: cfg})
	if err != nil {
		return "", fmt.Errorf("start: %w", err)
	}
	return r.GetHttpAddress(), nil
}

// Stop calls the Stop RPC, then waits (at most flushWait) until the logs
// the plugin wrote before answering have come through the stdio stream.
func (c *grpcClient) Stop(ctx context.Context, reason string) error {
	req := &proto.StopRequest{Reason: reason}
	if d, ok := ctx.Deadline(); ok {
		req.DeadlineUnixMs = d.UnixMilli()
	}
	var trailer metadata.MD
	if _, err := c.client.Stop(ctx, req, grpc.Trailer(&trailer)); err != nil {
		return fmt.Errorf("stop: %w", err)
	}
	if nonce := trailer.Get(flushTrailer); len(nonce) == 1 && c.stderr != nil {
		wctx, cancel := context.WithTimeout(ctx, flushWait)
		defer cancel()
		_ = c.stderr.wait(wctx, nonce[0]) // logs are best effort
	}
	return nil
}

func (c *grpcClient) Health(ctx context.Context) (Health, error) {
	r, err := c.client.Health(ctx, &proto.HealthRequest{})
	if err != nil {
		return Health{}, fmt.Errorf("health: %w", err)
	}
	return Health{Ready: r.GetReady(), Status: r.GetStatus(), Details: r.GetDetails()}, nil
}

// grpcServer serves a plugin implementation to the host.
type grpcServer struct {
	proto.UnimplementedPluginServer
	impl Plugin
	logs *LogWriter // nil if the plugin has none

	attach sync.Once
}

// attachLogs attaches the log writer to go-plugin's redirected stderr.
// go-plugin's Serve assigns os.Stderr before it starts serving, so every
// RPC happens after that assignment and may read os.Stderr.
func (s *grpcServer) attachLogs() {
	if s.logs != nil {
		s.attach.Do(func() { s.logs.attach(os.Stderr) })
	}
}

// flushLogs flushes the log writer and tells the host, in a trailer, which
// marker ends the flushed logs.
func (s *grpcServer) flushLogs(ctx context.Context) {
	if s.logs == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, flushWait)
	defer cancel()
	nonce := newNonce()
	if s.logs.flush(ctx, markerLine(nonce)) == nil {
		_ = grpc.SetTrailer(ctx, metadata.Pairs(flushTrailer, nonce))
	}
}

func (s *grpcServer) Describe(ctx context.Context, _ *proto.DescribeRequest) (*proto.DescribeResponse, error) {
	s.attachLogs()
	d, err := s.impl.Describe(ctx)
	if err != nil {
		return nil, err
	}
	return &proto.DescribeResponse{
		Name:        d.Name,
		Version:     d.Version,
		Description: d.Description,
		InstanceId:  d.InstanceID,
		Pid:         int64(d.PID),
	}, nil
}

func (s *grpcServer) Start(ctx context.Context, r *proto.StartRequest) (*proto.StartResponse, error) {
	s.attachLogs()
	addr, err := s.impl.Start(ctx, r.GetConfig())
	if err != nil {
		return nil, err
	}
	return &proto.StartResponse{HttpAddress: addr}, nil
}

func (s *grpcServer) Stop(ctx context.Context, r *proto.StopRequest) (*proto.StopResponse, error) {
	s.attachLogs()
	if ms := r.GetDeadlineUnixMs(); ms > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, time.UnixMilli(ms))
		defer cancel()
	}
	err := s.impl.Stop(ctx, r.GetReason())
	s.flushLogs(ctx)
	if err != nil {
		return nil, err
	}
	return &proto.StopResponse{}, nil
}

func (s *grpcServer) Health(ctx context.Context, _ *proto.HealthRequest) (*proto.HealthResponse, error) {
	s.attachLogs()
	h, err := s.impl.Health(ctx)
	if err != nil {
		return nil, err
	}
	return &proto.HealthResponse{Ready: h.Ready, Status: h.Status, Details: h.Details}, nil
}
