package pluginproto

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/home-console/client-manager/pkg/pluginproto/proto"
)

// GRPCPlugin adapts a [Plugin] to go-plugin's gRPC transport. The plugin
// side sets Impl; the host side leaves it nil.
type GRPCPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	Impl Plugin
}

// GRPCServer registers Impl on the plugin's gRPC server.
func (p *GRPCPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	proto.RegisterPluginServer(s, &grpcServer{impl: p.Impl})
	return nil
}

// GRPCClient returns a [Plugin] that calls the plugin process over conn.
func (p *GRPCPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, conn *grpc.ClientConn) (any, error) {
	return &grpcClient{client: proto.NewPluginClient(conn)}, nil
}

// grpcClient is the host's view of a plugin.
type grpcClient struct{ client proto.PluginClient }

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

func (c *grpcClient) Stop(ctx context.Context, reason string) error {
	req := &proto.StopRequest{Reason: reason}
	if d, ok := ctx.Deadline(); ok {
		req.DeadlineUnixMs = d.UnixMilli()
	}
	if _, err := c.client.Stop(ctx, req); err != nil {
		return fmt.Errorf("stop: %w", err)
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
}

func (s *grpcServer) Describe(ctx context.Context, _ *proto.DescribeRequest) (*proto.DescribeResponse, error) {
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
	addr, err := s.impl.Start(ctx, r.GetConfig())
	if err != nil {
		return nil, err
	}
	return &proto.StartResponse{HttpAddress: addr}, nil
}

func (s *grpcServer) Stop(ctx context.Context, r *proto.StopRequest) (*proto.StopResponse, error) {
	if ms := r.GetDeadlineUnixMs(); ms > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, time.UnixMilli(ms))
		defer cancel()
	}
	if err := s.impl.Stop(ctx, r.GetReason()); err != nil {
		return nil, err
	}
	return &proto.StopResponse{}, nil
}

func (s *grpcServer) Health(ctx context.Context, _ *proto.HealthRequest) (*proto.HealthResponse, error) {
	h, err := s.impl.Health(ctx)
	if err != nil {
		return nil, err
	}
	return &proto.HealthResponse{Ready: h.Ready, Status: h.Status, Details: h.Details}, nil
}
