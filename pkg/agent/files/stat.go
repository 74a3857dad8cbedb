package files

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Info describes one file or directory.
type Info struct {
	Name    string      // base name
	Size    int64       // bytes (for a directory, what the file system says)
	Mode    fs.FileMode // type and permission bits
	ModTime time.Time
	IsDir   bool
}

// Listing is the content of a directory.
type Listing struct {
	// Entries are sorted by name. A symbolic link is listed as such
	// (Mode has fs.ModeSymlink), not followed.
	Entries []Info
	// Truncated is set when the directory has more than
	// [Config.MaxListEntries] entries; Entries then holds that many, in
	// no particular selection.
	Truncated bool
}

func infoOf(name string, fi fs.FileInfo) Info {
	return Info{Name: name, Size: fi.Size(), Mode: fi.Mode(), ModTime: fi.ModTime(), IsDir: fi.IsDir()}
}

// Stat describes path, following its symbolic links (within the roots).
func (r *Roots) Stat(path string) (Info, error) {
	t, err := r.resolve(path)
	if err != nil {
		return Info{}, err
	}
	fi, err := t.root.dir.Stat(t.rel)
	if err != nil {
		return Info{}, fsError(path, err)
	}
	return infoOf(filepath.Base(filepath.Clean(path)), fi), nil
}

// List describes the entries of the directory dir, at most
// [Config.MaxListEntries] of them. It reads the directory in one pass
// bounded by that limit.
func (r *Roots) List(dir string) (Listing, error) {
	t, err := r.resolve(dir)
	if err != nil {
		return Listing{}, err
	}
	f, err := t.root.dir.Open(t.rel)
	if err != nil {
		return Listing{}, fsError(dir, err)
	}
	defer func() { _ = f.Close() }()
	if fi, err := f.Stat(); err != nil {
		return Listing{}, fsError(dir, err)
	} else if !fi.IsDir() {
		return Listing{}, fmt.Errorf("%w: %s", ErrNotDir, dir)
	}
	limit := r.cfg.MaxListEntries
	des, err := f.ReadDir(limit + 1)
	if err != nil && !errors.Is(err, io.EOF) {
		return Listing{}, fsError(dir, err)
	}
	l := Listing{Truncated: len(des) > limit}
	if l.Truncated {
		des = des[:limit]
	}
	l.Entries = make([]Info, 0, len(des))
	for _, de := range des {
		fi, err := de.Info()
		if err != nil { // removed since it was read
			continue
		}
		l.Entries = append(l.Entries, infoOf(de.Name(), fi))
	}
	slices.SortFunc(l.Entries, func(a, b Info) int { return strings.Compare(a.Name, b.Name) })
	return l, nil
}
