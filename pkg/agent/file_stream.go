package agent

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"path/filepath"

	"github.com/home-console/client-manager/pkg/agent/files"
	"github.com/home-console/client-manager/pkg/agentproto"
	"github.com/home-console/client-manager/pkg/agentstream"
)

// serveFiles runs a file stream under the agent's files policy: without a
// root every one is refused with not_allowed, otherwise the files
// package's errors become the stream's close codes.
func (a *Agent) serveFiles(ctx context.Context, st *agentstream.Stream) {
	f := st.Request().File
	switch {
	case len(a.cfg.Files.Roots) == 0:
		_ = st.Abort(agentproto.StreamErrorUnsupported, "file transfers are not enabled on this agent (no files root)")
		return
	case f == nil:
		_ = st.Abort(agentproto.StreamErrorProtocol, "stream_open of kind "+string(st.Kind())+" needs file")
		return
	}
	switch st.Kind() {
	case agentproto.StreamFileRead:
		a.serveFileRead(ctx, st, *f)
	case agentproto.StreamFileWrite:
		a.serveFileWrite(ctx, st, *f)
	case agentproto.StreamFileStat:
		a.serveFileStat(st, *f)
	case agentproto.StreamFileList:
		a.serveFileList(st, *f)
	}
}

// refuseFile aborts st for err: with the offset to use for an offset
// mismatch, with the content's actual digest for a digest mismatch.
func refuseFile(st *agentstream.Stream, err error, sha string) {
	var om *files.OffsetMismatchError
	switch {
	case errors.As(err, &om):
		_ = st.AbortWith(agentproto.StreamClose{Code: om.Code(), Message: err.Error(), Offset: &om.Have})
	case errors.Is(err, files.ErrDigestMismatch):
		_ = st.AbortWith(agentproto.StreamClose{Code: files.ErrDigestMismatch.Code(), Message: err.Error(), SHA256: sha})
	default:
		refuse(st, err, files.ErrIO.Code())
	}
}

// serveFileRead sends a file's bytes from f.Offset, then its whole digest.
func (a *Agent) serveFileRead(ctx context.Context, st *agentstream.Stream, f agentproto.FileOpen) {
	rd, err := a.roots.OpenRead(ctx, f.Path, f.Offset)
	if err != nil {
		refuseFile(st, err, "")
		return
	}
	defer func() { _ = rd.Close() }()
	info := files.Info{Name: filepath.Base(f.Path), Size: rd.Size(), Mode: rd.Mode(), ModTime: rd.ModTime()}
	if err := st.Accept(agentproto.StreamOpened{File: fileInfo(f.Path, info)}); err != nil {
		return
	}
	n, rerr, werr := pump(st, rd, make([]byte, agentproto.DefaultStreamChunkBytes))
	switch {
	case werr != nil: // aborted or disconnected
	case !errors.Is(rerr, io.EOF):
		refuseFile(st, rerr, "")
	default:
		_ = st.CloseWrite(agentproto.StreamClose{Bytes: n, SHA256: rd.SHA256()})
	}
}

// serveFileWrite writes the stream's bytes to a temporary file and commits
// it when the server closes its side. When the stream is aborted or the
// connection ends first, the temporary file is kept (Writer.Close), so that
// a later write with Offset = its length resumes the upload.
func (a *Agent) serveFileWrite(ctx context.Context, st *agentstream.Stream, f agentproto.FileOpen) {
	w, err := a.roots.CreateWrite(ctx, f.Path, files.WriteOpts{
		Offset: f.Offset, Size: f.Size, Mode: fs.FileMode(f.Mode), ExpectSHA256: f.SHA256,
	})
	if err != nil {
		refuseFile(st, err, "")
		return
	}
	defer func() { _ = w.Close() }() // after Commit it does nothing
	if err := st.Accept(agentproto.StreamOpened{}); err != nil {
		return
	}
	_, rerr, werr := pump(w, st, make([]byte, agentproto.DefaultStreamChunkBytes))
	switch {
	case werr != nil:
		refuseFile(st, werr, "")
		return
	case !errors.Is(rerr, io.EOF):
		return // aborted or disconnected: keep the temporary file
	}
	res, err := w.Commit()
	if err != nil {
		refuseFile(st, err, res.SHA256)
		return
	}
	a.log.Info("file written", "stream_id", st.ID(), "path", f.Path, "size", res.Size, "sha256", res.SHA256)
	_ = st.CloseWrite(agentproto.StreamClose{Bytes: res.Size, SHA256: res.SHA256})
}

// serveFileStat answers with the file's description and no data.
func (a *Agent) serveFileStat(st *agentstream.Stream, f agentproto.FileOpen) {
	info, err := a.roots.Stat(f.Path)
	if err != nil {
		refuseFile(st, err, "")
		return
	}
	if err := st.Accept(agentproto.StreamOpened{File: fileInfo(f.Path, info)}); err != nil {
		return
	}
	_ = st.CloseWrite(agentproto.StreamClose{})
}

// serveFileList sends the directory's listing as one JSON document.
func (a *Agent) serveFileList(st *agentstream.Stream, f agentproto.FileOpen) {
	l, err := a.roots.List(f.Path)
	if err != nil {
		refuseFile(st, err, "")
		return
	}
	dir := filepath.Clean(f.Path)
	doc := agentproto.FileListing{Path: dir, Entries: make([]agentproto.FileInfo, 0, len(l.Entries)), Truncated: l.Truncated}
	for _, e := range l.Entries {
		doc.Entries = append(doc.Entries, *fileInfo(filepath.Join(dir, e.Name), e))
	}
	b, err := json.Marshal(doc)
	if err != nil {
		refuse(st, err, files.ErrIO.Code())
		return
	}
	if err := st.Accept(agentproto.StreamOpened{}); err != nil {
		return
	}
	if _, err := st.Write(b); err != nil {
		return
	}
	_ = st.CloseWrite(agentproto.StreamClose{})
}

// fileInfo describes a file in the protocol's terms.
func fileInfo(path string, i files.Info) *agentproto.FileInfo {
	typ := "other"
	switch {
	case i.IsDir:
		typ = "dir"
	case i.Mode&fs.ModeSymlink != 0:
		typ = "symlink"
	case i.Mode.IsRegular():
		typ = "file"
	}
	return &agentproto.FileInfo{Path: filepath.Clean(path), Name: i.Name, Type: typ, Size: i.Size,
		Mode: uint32(i.Mode.Perm()), ModTime: i.ModTime}
}
