package cmservice

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/home-console/client-manager/internal/access"
	"github.com/home-console/client-manager/internal/hub"
	"github.com/home-console/client-manager/internal/sessions"
	"github.com/home-console/client-manager/pkg/agentproto"
	"github.com/home-console/client-manager/pkg/agentstream"
)

// RecordingsDir is the directory of terminal recordings inside the data
// directory.
const RecordingsDir = "recordings"

// recordingsPruneInterval is how often recordings past their retention
// or the total cap are deleted.
const recordingsPruneInterval = 10 * time.Minute

// Sessions configures terminals and file transfers (internal/sessions);
// zero fields take that package's defaults, and the roles default to
// admin.
type Sessions struct {
	TerminalRole, FilesRole access.Role
	// Config's Dir is ignored: recordings live in <DataDir>/recordings.
	Config sessions.Config
}

// openSessions starts the sessions manager over the hub.
func openSessions(cfg Config, h *hub.Hub, a *app) error {
	sc := cfg.Sessions.Config
	sc.Dir = filepath.Join(cfg.DataDir, RecordingsDir)
	sc.Log = a.log
	m, err := sessions.New(hubStreams{h}, sc)
	if err != nil {
		return err
	}
	a.sessions = m
	a.background(func(ctx context.Context) { m.Run(ctx, recordingsPruneInterval) })
	return nil
}

// hubStreams adapts the hub to sessions.Streams, translating its errors.
type hubStreams struct{ h *hub.Hub }

// OpenStream implements sessions.Streams.
func (s hubStreams) OpenStream(ctx context.Context, agentID string, open agentproto.StreamOpen) (sessions.Stream, agentproto.StreamOpened, error) {
	st, opened, err := s.h.OpenStream(ctx, agentID, open)
	switch {
	case errors.Is(err, hub.ErrOffline):
		return nil, opened, fmt.Errorf("%w: %w", sessions.ErrOffline, err)
	case errors.Is(err, hub.ErrStreamsUnsupported):
		return nil, opened, fmt.Errorf("%w: %w", sessions.ErrStreamsUnsupported, err)
	case errors.Is(err, agentstream.ErrTooManyStreams):
		return nil, opened, fmt.Errorf("%w: %w", sessions.ErrTooManyStreams, err)
	case err != nil:
		return nil, opened, err
	}
	return hubStream{Stream: st, h: s.h, agentID: agentID}, opened, nil
}

// Features implements sessions.Streams.
func (s hubStreams) Features(agentID string) ([]string, bool) { return s.h.Features(agentID) }

// CloseOf implements sessions.Streams.
func (hubStreams) CloseOf(err error) (agentproto.StreamClose, bool) {
	var ce *agentstream.CloseError
	if errors.As(err, &ce) {
		return ce.Close, true
	}
	return agentproto.StreamClose{}, false
}

// hubStream is an agent stream whose terminal controls go out through
// the hub's control queue (agentstream has no server-side sender for
// them).
type hubStream struct {
	*agentstream.Stream
	h       *hub.Hub
	agentID string
}

// Control implements sessions.Stream.
func (s hubStream) Control(msg any) error {
	var typ string
	switch m := msg.(type) {
	case agentproto.TerminalResize:
		m.StreamID = s.ID()
		typ, msg = agentproto.TypeTerminalResize, m
	case agentproto.TerminalSignal:
		m.StreamID = s.ID()
		typ, msg = agentproto.TypeTerminalSignal, m
	default:
		return fmt.Errorf("cmservice: %T is not a terminal control", msg)
	}
	data, err := json.Marshal(msg)
	if err != nil {
		return err
	}
	return s.h.Send(s.agentID, agentproto.Envelope{Type: typ, Data: data})
}

// DefaultSessions returns the sessions configuration with its defaults.
func DefaultSessions() Sessions {
	return Sessions{TerminalRole: access.RoleAdmin, FilesRole: access.RoleAdmin, Config: sessions.Config{
		RecordingMaxBytes:       sessions.DefaultRecordingMaxBytes,
		RecordingsMaxTotalBytes: sessions.DefaultRecordingsMaxTotalBytes,
		RecordingRetention:      sessions.DefaultRecordingRetention,
		FilesMaxBytes:           sessions.DefaultFilesMaxBytes,
		FilesMaxPerAgent:        sessions.DefaultFilesMaxPerAgent,
		TicketTTL:               sessions.DefaultTicketTTL,
	}}
}
