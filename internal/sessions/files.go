package sessions

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/home-console/client-manager/internal/fleet"
	"github.com/home-console/client-manager/pkg/agentproto"
)

// maxListingBytes bounds a file_list document read from an agent.
const maxListingBytes = 16 << 20

// copyBuffer is the chunk a transfer moves at once.
const copyBuffer = 32 << 10

// acquire takes one of the agent's transfer slots; release gives it back.
func (m *Manager) acquire(agentID string) (release func(), err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.transfers[agentID] >= m.cfg.FilesMaxPerAgent {
		return nil, fleet.Errorf(fleet.CodeTransferLimit, "%d transfers with this agent run already (CLIENT_MANAGER_FILES_MAX_PER_AGENT); retry later", m.cfg.FilesMaxPerAgent)
	}
	m.transfers[agentID]++
	return func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		if m.transfers[agentID]--; m.transfers[agentID] == 0 {
			delete(m.transfers, agentID)
		}
	}, nil
}

// openFile checks the agent offers files, takes a transfer slot and opens
// a file stream of kind; the caller calls release when done.
func (m *Manager) openFile(ctx context.Context, kind agentproto.StreamKind, req fleet.FileRequest) (Stream, agentproto.StreamOpened, func(), error) {
	if ok, err := m.hasFeature(req.AgentID, agentproto.FeatureFiles); err != nil || !ok {
		return nil, agentproto.StreamOpened{}, nil, cmpErr(err, fleet.Errorf(fleet.CodeFilesNotAllowed, "the agent has no file roots (start it with --files-root)"))
	}
	release, err := m.acquire(req.AgentID)
	if err != nil {
		return nil, agentproto.StreamOpened{}, nil, err
	}
	open := agentproto.StreamOpen{Kind: kind, File: &agentproto.FileOpen{
		Path: req.Path, Offset: req.Offset, Size: req.Size, Mode: req.Mode, SHA256: req.SHA256}}
	st, opened, err := m.streams.OpenStream(ctx, req.AgentID, open)
	if err != nil {
		release()
		return nil, opened, nil, m.agentError(err, string(kind)+" "+req.Path, fleet.CodeFilesNotAllowed)
	}
	return st, opened, release, nil
}

// Upload writes body to req.Path on the agent: req.Size bytes in all,
// of which body holds those from req.Offset (a resumed upload continues
// the agent's pending one). Body is streamed: at most a copy buffer and
// the stream's window are in memory. Errors: fleet.CodeTransferTooLarge
// (over the server's cap, before the agent is asked),
// fleet.CodeAgentOffline, CodeFilesNotAllowed, CodeTransferLimit,
// *fleet.OffsetMismatchError, *fleet.DigestMismatchError,
// CodeAgentDisconnected, an agent's code, or body's read error (the
// agent keeps what it got, for a resume).
func (m *Manager) Upload(ctx context.Context, req fleet.FileRequest, body io.Reader) (fleet.FileResult, error) {
	if req.Size > m.cfg.FilesMaxBytes {
		return fleet.FileResult{}, fleet.Errorf(fleet.CodeTransferTooLarge, "%d bytes is over the server's limit of %d (CLIENT_MANAGER_FILES_MAX_BYTES)", req.Size, m.cfg.FilesMaxBytes)
	}
	st, _, release, err := m.openFile(ctx, agentproto.StreamFileWrite, req)
	if err != nil {
		return fleet.FileResult{}, err
	}
	defer release()
	sent, err := copyToStream(ctx, st, body)
	if err != nil {
		_ = st.Abort(agentproto.StreamErrorCancelled, "upload interrupted")
		return fleet.FileResult{Bytes: sent}, m.streamFailure(err, "upload "+req.Path)
	}
	if err := st.CloseWrite(agentproto.StreamClose{Bytes: sent}); err != nil {
		return fleet.FileResult{Bytes: sent}, m.streamFailure(err, "upload "+req.Path)
	}
	if _, err := io.Copy(io.Discard, st); err != nil {
		return fleet.FileResult{Bytes: sent}, m.streamFailure(err, "upload "+req.Path)
	}
	c, _ := st.PeerClose()
	return fleet.FileResult{Path: req.Path, Size: c.Bytes, Bytes: sent, SHA256: c.SHA256, Mode: req.Mode}, nil
}

// copyToStream copies body to st until body's end.
func copyToStream(ctx context.Context, st Stream, body io.Reader) (int64, error) {
	buf := make([]byte, copyBuffer)
	var sent int64
	for {
		n, rerr := body.Read(buf)
		if n > 0 {
			w, err := st.WriteContext(ctx, buf[:n])
			sent += int64(w)
			if err != nil {
				return sent, err
			}
		}
		if errors.Is(rerr, io.EOF) {
			return sent, nil
		}
		if rerr != nil {
			return sent, fmt.Errorf("request body: %w", rerr)
		}
	}
}

// streamFailure is the coded error of a transfer that broke off: the
// agent's code, CodeAgentDisconnected, or err as it is (a body's error).
func (m *Manager) streamFailure(err error, what string) error {
	if c, ok := m.streams.CloseOf(err); ok && c.Code != agentproto.StreamErrorCancelled {
		return closeError(c, what, fleet.CodeFilesNotAllowed)
	}
	return err
}

// Download copies req.Path from req.Offset on the agent: once the agent
// answered, start receives the file's info and returns where the bytes
// go (the caller writes its headers there first). Errors before start
// are coded (as Upload's, and *fleet.RangeNotSatisfiableError for an
// offset at or past the end of a non-empty file); after it, the transfer broke off and the
// destination has fewer bytes than announced. The result carries the
// whole file's SHA-256 (from the agent) and the bytes copied.
func (m *Manager) Download(ctx context.Context, req fleet.FileRequest, start func(agentproto.FileInfo) io.Writer) (fleet.FileResult, error) {
	st, opened, release, err := m.openFile(ctx, agentproto.StreamFileRead, fleet.FileRequest{AgentID: req.AgentID, Path: req.Path, Offset: req.Offset})
	if err != nil {
		return fleet.FileResult{}, err
	}
	defer release()
	var info agentproto.FileInfo
	if opened.File != nil {
		info = *opened.File
	}
	if req.Offset > 0 && req.Offset >= info.Size {
		_ = st.Abort(agentproto.StreamErrorCancelled, "range not satisfiable")
		return fleet.FileResult{Size: info.Size}, &fleet.RangeNotSatisfiableError{Offset: req.Offset, Size: info.Size}
	}
	dst := start(info)
	n, err := io.CopyBuffer(dst, st, make([]byte, copyBuffer))
	res := fleet.FileResult{Path: info.Path, Size: info.Size, Bytes: n, Mode: info.Mode}
	if err != nil {
		_ = st.Abort(agentproto.StreamErrorCancelled, "download interrupted")
		return res, m.streamFailure(err, "download "+req.Path)
	}
	_ = st.CloseWrite(agentproto.StreamClose{})
	c, _ := st.PeerClose()
	res.SHA256 = c.SHA256
	return res, nil
}

// Stat describes path on the agent.
func (m *Manager) Stat(ctx context.Context, agentID, path string) (agentproto.FileInfo, error) {
	st, opened, release, err := m.openFile(ctx, agentproto.StreamFileStat, fleet.FileRequest{AgentID: agentID, Path: path})
	if err != nil {
		return agentproto.FileInfo{}, err
	}
	defer release()
	discard(st)
	_ = st.CloseWrite(agentproto.StreamClose{})
	if opened.File == nil {
		return agentproto.FileInfo{}, fmt.Errorf("file_stat %s: the agent sent no file info", path)
	}
	return *opened.File, nil
}

// List returns the directory listing of path on the agent.
func (m *Manager) List(ctx context.Context, agentID, path string) (agentproto.FileListing, error) {
	st, _, release, err := m.openFile(ctx, agentproto.StreamFileList, fleet.FileRequest{AgentID: agentID, Path: path})
	if err != nil {
		return agentproto.FileListing{}, err
	}
	defer release()
	data, err := io.ReadAll(io.LimitReader(st, maxListingBytes+1))
	_ = st.CloseWrite(agentproto.StreamClose{})
	if err != nil {
		return agentproto.FileListing{}, m.streamFailure(err, "file_list "+path)
	}
	var l agentproto.FileListing
	if len(data) > maxListingBytes {
		_ = st.Abort(agentproto.StreamErrorCancelled, "listing too large")
		return l, fmt.Errorf("file_list %s: listing over %d bytes", path, maxListingBytes)
	}
	if err := json.Unmarshal(data, &l); err != nil {
		return l, fmt.Errorf("file_list %s: %w", path, err)
	}
	if l.Entries == nil {
		l.Entries = []agentproto.FileInfo{}
	}
	return l, nil
}
