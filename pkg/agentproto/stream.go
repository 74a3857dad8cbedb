package agentproto

import "time"

// Streams (feature [FeatureStreams]) carry interactive sessions — a
// terminal, a file transfer — over the agent's WebSocket, next to the
// command messages. Only the server opens streams. A stream's bytes travel
// in binary frames: a 4-byte big-endian stream id, then at most
// Welcome.StreamChunkBytes of payload. Everything else about a stream is a
// JSON text frame (the Type* constants below).
//
// Flow control: each side may have at most the window
// (Welcome.StreamWindowBytes, or StreamOpen.WindowBytes when smaller) of a
// stream's payload sent and not yet credited; the receiver returns credit
// with stream_credit as it consumes the bytes. Data beyond the credit is a
// protocol violation (the connection is closed with [ClosePolicy]). Control
// frames are written ahead of queued data, so heartbeats, commands and
// results never wait behind a session.
//
// Closing: each side sends exactly one stream_close per stream, after its
// last data frame. A stream_close with a Code aborts the stream: the
// receiver stops sending and answers with its own stream_close. A stream
// is over, and its id never used again on the connection, once both sides
// sent stream_close. When the connection ends, every stream on it ends.

// Features an agent lists in Hello.Features and the server in
// Welcome.Features. A feature is in use when both sides list it.
const (
	// FeatureStreams: binary frames and the stream_* messages.
	FeatureStreams = "streams.v1"
	// FeatureTerminal: the agent's configuration allows terminal streams.
	FeatureTerminal = "terminal"
	// FeatureFiles: the agent's configuration allows file streams (it has
	// at least one files root).
	FeatureFiles = "files"
)

// Stream defaults the server advertises in Welcome.
const (
	// DefaultStreamWindowBytes is the per-stream, per-direction credit window.
	DefaultStreamWindowBytes = 256 << 10
	// DefaultStreamChunkBytes is the largest payload of one binary frame.
	DefaultStreamChunkBytes = 32 << 10
	// StreamHeaderBytes is the length of a binary frame's stream id.
	StreamHeaderBytes = 4
)

// Stream message types.
const (
	// TypeStreamOpen (server → agent) opens a stream: [StreamOpen].
	TypeStreamOpen = "stream_open"
	// TypeStreamOpened (agent → server) accepts it: [StreamOpened]. A
	// refused stream is answered with stream_close and a Code instead.
	TypeStreamOpened = "stream_opened"
	// TypeStreamCredit (both ways) returns window: [StreamCredit].
	TypeStreamCredit = "stream_credit"
	// TypeStreamClose (both ways) ends one side of a stream: [StreamClose].
	TypeStreamClose = "stream_close"
	// TypeTerminalResize (server → agent) resizes a terminal: [TerminalResize].
	TypeTerminalResize = "terminal_resize"
	// TypeTerminalSignal (server → agent) signals the terminal's foreground
	// process group: [TerminalSignal].
	TypeTerminalSignal = "terminal_signal"
)

// StreamKind says what a stream carries.
type StreamKind string

// Stream kinds.
const (
	// StreamTerminal: PTY output agent → server, keystrokes server → agent.
	StreamTerminal StreamKind = "terminal"
	// StreamFileRead: a file's bytes from File.Offset, agent → server.
	StreamFileRead StreamKind = "file_read"
	// StreamFileWrite: a file's bytes from File.Offset, server → agent;
	// committed (fsync, rename) when the server's stream_close arrives.
	StreamFileWrite StreamKind = "file_write"
	// StreamFileStat: no data; stream_opened carries the FileInfo.
	StreamFileStat StreamKind = "file_stat"
	// StreamFileList: one JSON [FileListing] document, agent → server.
	StreamFileList StreamKind = "file_list"
)

// StreamOpen opens a stream. StreamID is chosen by the server: non-zero,
// never reused on the connection.
type StreamOpen struct {
	StreamID uint32     `json:"stream_id"`
	Kind     StreamKind `json:"kind"`
	// WindowBytes, if set and smaller than the welcome's, is this stream's
	// window in both directions.
	WindowBytes int64         `json:"window_bytes,omitempty"`
	Terminal    *TerminalOpen `json:"terminal,omitempty"`
	File        *FileOpen     `json:"file,omitempty"`
}

// TerminalOpen describes a terminal stream.
type TerminalOpen struct {
	Cols int    `json:"cols"`
	Rows int    `json:"rows"`
	Term string `json:"term,omitempty"`
}

// FileOpen describes a file stream.
type FileOpen struct {
	// Path is absolute, on the agent; it must be under one of its roots.
	Path string `json:"path"`
	// Offset is where a read starts, or where a write resumes (the length
	// of the agent's pending upload; see StreamClose.Offset).
	Offset int64 `json:"offset,omitempty"`
	// Size is a write's whole length in bytes.
	Size int64 `json:"size,omitempty"`
	// Mode is a write's permission bits (0 keeps the replaced file's, or
	// 0644).
	Mode uint32 `json:"mode,omitempty"`
	// SHA256 is the lower-case hex digest a write's whole content must have.
	SHA256 string `json:"sha256,omitempty"`
}

// StreamOpened accepts a stream.
type StreamOpened struct {
	StreamID uint32 `json:"stream_id"`
	// PID is a terminal's shell process id.
	PID int `json:"pid,omitempty"`
	// File is the file a read or stat is about (for a read: its size and
	// mode; Offset echoes where the bytes start).
	File *FileInfo `json:"file,omitempty"`
}

// FileInfo describes one file or directory.
type FileInfo struct {
	Path    string    `json:"path"`
	Name    string    `json:"name"`
	Type    string    `json:"type"` // "file", "dir", "symlink" or "other"
	Size    int64     `json:"size"`
	Mode    uint32    `json:"mode"` // permission bits
	ModTime time.Time `json:"mod_time"`
}

// FileListing is the document of a file_list stream.
type FileListing struct {
	Path    string     `json:"path"`
	Entries []FileInfo `json:"entries"`
	// Truncated is set when the directory has more entries than the
	// agent's listing limit.
	Truncated bool `json:"truncated"`
}

// StreamCredit returns Bytes of window to the peer.
type StreamCredit struct {
	StreamID uint32 `json:"stream_id"`
	Bytes    int64  `json:"bytes"`
}

// StreamClose ends the sender's side of a stream; with a Code it aborts
// the stream (see the StreamError* codes).
type StreamClose struct {
	StreamID uint32 `json:"stream_id"`
	Code     string `json:"code,omitempty"`
	Message  string `json:"message,omitempty"`
	// ExitCode is a terminal's exit status (-1 when killed by a signal).
	ExitCode *int `json:"exit_code,omitempty"`
	// Bytes is how many payload bytes the sender sent on the stream, or
	// for a committed write, the file's size.
	Bytes int64 `json:"bytes,omitempty"`
	// SHA256 is the whole file's digest at the end of a read, or of a
	// committed write.
	SHA256 string `json:"sha256,omitempty"`
	// Offset is the length of the agent's pending upload, when a write
	// was refused with StreamErrorOffsetMismatch.
	Offset *int64 `json:"offset,omitempty"`
}

// Stream error codes carried by StreamClose.Code. The agent SDK's file and
// terminal codes (pkg/agent/files, pkg/agent/terminal) are used as they
// are: path_outside_roots, file_not_found, digest_mismatch, file_busy,
// terminal_disabled, terminal_limit, … (docs/protocol.md lists them all).
const (
	// StreamErrorCancelled: the server's user went away (operator left,
	// request cancelled).
	StreamErrorCancelled = "cancelled"
	// StreamErrorProtocol: a stream message that breaks the rules above.
	StreamErrorProtocol = "protocol_error"
	// StreamErrorUnknownKind: the agent does not know the stream kind.
	StreamErrorUnknownKind = "unknown_kind"
	// StreamErrorUnsupported: the agent's configuration does not allow the
	// kind (no --allow-terminal, no files root).
	StreamErrorUnsupported = "not_allowed"
	// StreamErrorOffsetMismatch: a write's Offset is not the pending
	// upload's length, given in StreamClose.Offset.
	StreamErrorOffsetMismatch = "offset_mismatch"
	// StreamErrorDisconnected: the connection ended (set locally, never
	// sent).
	StreamErrorDisconnected = "disconnected"
	// StreamErrorShutdown: the server or agent is stopping.
	StreamErrorShutdown = "shutdown"
	// StreamErrorLimit: the agent already has as many streams open as it
	// allows on one connection.
	StreamErrorLimit = "stream_limit"
)

// TerminalResize changes a terminal's size.
type TerminalResize struct {
	StreamID uint32 `json:"stream_id"`
	Cols     int    `json:"cols"`
	Rows     int    `json:"rows"`
}

// TerminalSignal sends a signal to a terminal's foreground process group.
type TerminalSignal struct {
	StreamID uint32 `json:"stream_id"`
	// Signal is one of "SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGKILL",
	// "SIGTSTP", "SIGCONT", "SIGWINCH", "SIGUSR1", "SIGUSR2".
	Signal string `json:"signal"`
}
