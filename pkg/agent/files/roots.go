package files

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
)

// Defaults of [Config].
const (
	DefaultMaxTransferSize = 1 << 30 // 1 GiB
	DefaultMaxTransfers    = 4
	DefaultMaxListEntries  = 10000
)

// Config is the agent's file access policy. The zero value refuses every
// path.
type Config struct {
	// Roots are the absolute paths of the directories transfers may use,
	// with everything below them. Each must exist when [New] runs.
	Roots []string
	// MaxTransferSize bounds the size of one file read or written, in
	// bytes; zero means [DefaultMaxTransferSize].
	MaxTransferSize int64
	// MaxTransfers bounds the reads and writes open at once; zero means
	// [DefaultMaxTransfers].
	MaxTransfers int
	// MaxListEntries bounds the entries of one listing; zero means
	// [DefaultMaxListEntries].
	MaxListEntries int
}

// Roots is the file access of one agent. It is safe for concurrent use.
type Roots struct {
	cfg   Config
	roots []*root // longest path first, so nested roots match innermost

	mu      sync.Mutex
	active  int                 // open transfers
	writing map[string]struct{} // destinations (resolved) being uploaded
}

// root is one configured directory.
type root struct {
	given string   // as configured, cleaned
	real  string   // with its symbolic links resolved
	dir   *os.Root // opened at real
}

// target is a resolved path: rel (slash-free of "..") inside root.
type target struct {
	root *root
	rel  string
	abs  string
}

// New validates cfg, fills in its defaults and opens its roots. Call
// [Roots.Close] to release them.
func New(cfg Config) (*Roots, error) {
	if cfg.MaxTransferSize <= 0 {
		cfg.MaxTransferSize = DefaultMaxTransferSize
	}
	if cfg.MaxTransfers <= 0 {
		cfg.MaxTransfers = DefaultMaxTransfers
	}
	if cfg.MaxListEntries <= 0 {
		cfg.MaxListEntries = DefaultMaxListEntries
	}
	r := &Roots{cfg: cfg, writing: map[string]struct{}{}}
	for _, p := range cfg.Roots {
		rt, err := openRoot(p)
		if err != nil {
			_ = r.Close()
			return nil, err
		}
		r.roots = append(r.roots, rt)
	}
	slices.SortStableFunc(r.roots, func(a, b *root) int { return len(b.real) - len(a.real) })
	return r, nil
}

// openRoot checks and opens one configured root.
func openRoot(p string) (*root, error) {
	if !filepath.IsAbs(p) || strings.ContainsRune(p, 0) {
		return nil, fmt.Errorf("files root %q: must be an absolute path", p)
	}
	given := filepath.Clean(p)
	real, err := filepath.EvalSymlinks(given)
	if err != nil {
		return nil, fmt.Errorf("files root: %w", err)
	}
	if st, err := os.Stat(real); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("files root %q: not a directory", p)
	}
	dir, err := os.OpenRoot(real)
	if err != nil {
		return nil, fmt.Errorf("files root: %w", err)
	}
	return &root{given: given, real: real, dir: dir}, nil
}

// Config returns the configuration with its defaults filled in.
func (r *Roots) Config() Config { return r.cfg }

// Close releases the roots' directory handles. Transfers still open keep
// working; later calls fail.
func (r *Roots) Close() error {
	for _, rt := range r.roots {
		_ = rt.dir.Close()
	}
	return nil
}

// Resolve returns the path that path designates, with its symbolic links
// resolved, if it is allowed: an error wrapping [ErrBadPath] for a relative
// path, [ErrOutsideRoots] if it or its resolution is under no root,
// [ErrNotFound] for a dangling symbolic link. Components that do not exist
// yet are kept as given. It does not check the final file's kind or links.
func (r *Roots) Resolve(path string) (string, error) {
	t, err := r.resolve(path)
	return t.abs, err
}

func (r *Roots) resolve(path string) (target, error) {
	if path == "" || strings.ContainsRune(path, 0) || !filepath.IsAbs(path) {
		return target{}, fmt.Errorf("%w: %q", ErrBadPath, path)
	}
	clean := filepath.Clean(path)
	if !slices.ContainsFunc(r.roots, func(rt *root) bool { return under(clean, rt.given) || under(clean, rt.real) }) {
		return target{}, fmt.Errorf("%w: %s", ErrOutsideRoots, clean)
	}
	real, err := evalExisting(clean)
	if err != nil {
		return target{}, err
	}
	for _, rt := range r.roots {
		if under(real, rt.real) {
			rel, err := filepath.Rel(rt.real, real)
			if err != nil {
				return target{}, fsError(clean, err)
			}
			return target{root: rt, rel: rel, abs: real}, nil
		}
	}
	return target{}, fmt.Errorf("%w: %s leads to %s", ErrOutsideRoots, clean, real)
}

// under reports whether p is dir or below it (both clean and absolute).
func under(p, dir string) bool {
	if p == dir {
		return true
	}
	if !strings.HasSuffix(dir, string(filepath.Separator)) {
		dir += string(filepath.Separator)
	}
	return strings.HasPrefix(p, dir)
}

// evalExisting resolves the symbolic links of the longest existing prefix
// of the clean absolute path p and appends the rest unchanged.
func evalExisting(p string) (string, error) {
	var rest []string
	for cur := p; ; {
		real, err := filepath.EvalSymlinks(cur)
		if err == nil {
			return filepath.Join(append([]string{real}, rest...)...), nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return "", fsError(p, err)
		}
		if _, lerr := os.Lstat(cur); lerr == nil {
			return "", fmt.Errorf("%w: %s: dangling symbolic link %s", ErrNotFound, p, cur)
		}
		parent := filepath.Dir(cur)
		if parent == cur {
			return "", fsError(p, err)
		}
		rest = append([]string{filepath.Base(cur)}, rest...)
		cur = parent
	}
}

// acquire takes a transfer slot and, for an upload (dest != ""), the
// destination; release gives them back.
func (r *Roots) acquire(dest string) (release func(), err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, busy := r.writing[dest]; dest != "" && busy {
		return nil, fmt.Errorf("%w: %s", ErrBusy, dest)
	}
	if r.active >= r.cfg.MaxTransfers {
		return nil, fmt.Errorf("%w (%d)", ErrLimit, r.cfg.MaxTransfers)
	}
	r.active++
	if dest != "" {
		r.writing[dest] = struct{}{}
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.active--
			delete(r.writing, dest)
		})
	}, nil
}
