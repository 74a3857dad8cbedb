//go:build !unix

package files

import (
	"io/fs"
	"os"
)

// links is 1: hard link counts are not available here.
func links(fs.FileInfo) uint64 { return 1 }

// lock always succeeds: only uploads within this process are exclusive.
func lock(*os.File) (bool, error) { return true, nil }
