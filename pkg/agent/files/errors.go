package files

import (
	"errors"
	"fmt"
	"io/fs"
	"syscall"
)

// Error is a refusal or failure of this package, with a stable code that
// travels in protocol messages. Compare with errors.Is against the
// sentinels below; errors.As with a *Error gives the code of a wrapped one.
type Error struct {
	code string
	text string
}

// Error returns the human-readable text.
func (e *Error) Error() string { return e.text }

// Code returns the stable identifier of the error, e.g. "path_outside_roots".
func (e *Error) Code() string { return e.code }

// The errors of this package.
var (
	// ErrOutsideRoots: the path, or what its symbolic links lead to, is
	// under none of the configured roots (or no root is configured).
	ErrOutsideRoots = &Error{"path_outside_roots", "path outside the agent's file roots"}
	// ErrBadPath: the path is empty, relative or holds a NUL byte.
	ErrBadPath = &Error{"path_invalid", "invalid path: it must be absolute"}
	// ErrNotFound: the file, or its parent directory for a write, does
	// not exist (or is a dangling symbolic link).
	ErrNotFound = &Error{"file_not_found", "no such file or directory"}
	// ErrIsDir: a file operation on a directory.
	ErrIsDir = &Error{"path_is_directory", "is a directory"}
	// ErrNotDir: a listing of something that is not a directory.
	ErrNotDir = &Error{"path_not_directory", "not a directory"}
	// ErrNotRegular: a device, FIFO, socket or other non-regular file.
	ErrNotRegular = &Error{"file_not_regular", "not a regular file"}
	// ErrHardLink: a read of a file with more than one hard link.
	ErrHardLink = &Error{"file_hard_link", "file has more than one hard link"}
	// ErrPermission: the agent's account may not access the file.
	ErrPermission = &Error{"file_permission_denied", "permission denied"}
	// ErrTooLarge: a transfer above [Config.MaxTransferSize], or more
	// bytes written than declared.
	ErrTooLarge = &Error{"transfer_too_large", "transfer larger than allowed"}
	// ErrDigestMismatch: the uploaded content's sha-256 is not the
	// expected one; the destination is unchanged.
	ErrDigestMismatch = &Error{"digest_mismatch", "sha-256 of the content does not match"}
	// ErrSizeMismatch: a commit before all declared bytes were written.
	ErrSizeMismatch = &Error{"size_mismatch", "content shorter than its declared size"}
	// ErrChanged: the file changed size or time while it was read.
	ErrChanged = &Error{"file_changed", "file changed while it was read"}
	// ErrBusy: another upload to the same destination is in progress.
	ErrBusy = &Error{"file_busy", "another upload to this path is in progress"}
	// ErrLimit: the agent already runs [Config.MaxTransfers] transfers.
	ErrLimit = &Error{"transfer_limit", "too many transfers on this agent"}
	// ErrBadRequest: invalid transfer options (size, mode, digest).
	ErrBadRequest = &Error{"transfer_bad_request", "invalid transfer request"}
	// ErrClosed: a Reader used after Close, a Writer after Commit, Close
	// or Abort.
	ErrClosed = &Error{"transfer_closed", "transfer already closed"}
	// ErrIO: any other failure of the file system.
	ErrIO = &Error{"file_io_error", "file system error"}
	// ErrOffsetMismatch matches every [*OffsetMismatchError] in errors.Is.
	ErrOffsetMismatch = &Error{"offset_mismatch", "offset does not match"}
)

// OffsetMismatchError refuses a transfer offset: for an upload, Have is
// the length of the pending temporary file, the offset to resume from; for
// a read, Have is the file's size.
type OffsetMismatchError struct {
	Have int64
}

// Error says which offset is expected.
func (e *OffsetMismatchError) Error() string {
	return fmt.Sprintf("offset does not match: resume from %d", e.Have)
}

// Code returns "offset_mismatch".
func (e *OffsetMismatchError) Code() string { return ErrOffsetMismatch.code }

// Is makes errors.Is(err, ErrOffsetMismatch) true.
func (e *OffsetMismatchError) Is(target error) bool { return target == ErrOffsetMismatch }

// fsError classifies an error of the file system about path.
func fsError(path string, err error) error {
	var kind *Error
	switch {
	case errors.As(err, &kind):
		return err
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENOTDIR):
		kind = ErrNotFound
	case errors.Is(err, fs.ErrPermission):
		kind = ErrPermission
	case errors.Is(err, syscall.EISDIR):
		kind = ErrIsDir
	default:
		kind = ErrIO
	}
	return fmt.Errorf("%w: %s: %w", kind, path, err)
}
