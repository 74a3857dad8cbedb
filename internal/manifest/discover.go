package manifest

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Status is what discovery concluded about a plugin.
type Status string

// Statuses of a discovered plugin.
const (
	// StatusOK means the plugin may run.
	StatusOK Status = "ok"
	// StatusDisabled means the manifest is valid but says enabled: false.
	StatusDisabled Status = "disabled"
	// StatusInvalid means the manifest itself is defective.
	StatusInvalid Status = "invalid"
	// StatusBlocked means the manifest is valid but a dependency is
	// unknown, invalid, blocked or disabled.
	StatusBlocked Status = "blocked"
)

// Entry is one plugin directory found by [Discover].
type Entry struct {
	// Name identifies the plugin. It is the manifest's name, except for an
	// invalid manifest without a usable name of its own (unreadable, bad
	// name, or a name already taken), which is named after its directory.
	Name string
	// Dir is the absolute path of the plugin directory.
	Dir string
	// Manifest is the manifest as far as it could be read; complete only
	// when Status is StatusOK or StatusDisabled.
	Manifest Manifest
	Status   Status
	// Reason explains a status other than StatusOK.
	Reason string
}

// Runnable reports whether the plugin may be started.
func (e *Entry) Runnable() bool { return e.Status == StatusOK || e.Status == StatusDisabled }

// Set is the outcome of discovering a plugins directory.
type Set struct {
	// Entries are sorted by directory name.
	Entries []Entry
	order   []string
}

// Lookup returns the entry named name.
func (s *Set) Lookup(name string) (*Entry, bool) {
	for i := range s.Entries {
		if s.Entries[i].Name == name {
			return &s.Entries[i], true
		}
	}
	return nil, false
}

// StartOrder returns the names of the runnable plugins (StatusOK and
// StatusDisabled) ordered so that every plugin comes after its
// dependencies. Stop in the reverse order.
func (s *Set) StartOrder() []string { return slices.Clone(s.order) }

// Discover loads every <dir>/<plugin>/plugin.json and validates the
// manifests against each other. A defect marks only the plugin concerned
// (invalid) and the plugins depending on it (blocked); the error is non-nil
// only if dir itself cannot be read. Subdirectories without a plugin.json
// are ignored.
func Discover(dir string) (*Set, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("plugins directory: %w", err)
	}
	des, err := os.ReadDir(abs)
	if err != nil {
		return nil, fmt.Errorf("plugins directory: %w", err)
	}
	set := &Set{}
	for _, de := range des { // os.ReadDir sorts by name
		pdir := filepath.Join(abs, de.Name())
		if fi, err := os.Stat(pdir); err != nil || !fi.IsDir() {
			continue
		}
		path := filepath.Join(pdir, FileName)
		if _, err := os.Stat(path); err != nil {
			continue
		}
		e := Entry{Dir: pdir, Status: StatusOK}
		e.Manifest, err = Load(path)
		if err != nil {
			e.Status, e.Reason = StatusInvalid, err.Error()
		} else if !e.Manifest.Enabled {
			e.Status, e.Reason = StatusDisabled, "disabled in its manifest (enabled: false)"
		}
		set.Entries = append(set.Entries, e)
	}
	set.assignNames()
	set.checkMounts()
	set.checkCycles()
	set.checkDependencies()
	set.order = set.topoOrder()
	return set, nil
}

// assignNames names every entry, marking the later of two manifests with
// the same name invalid.
func (s *Set) assignNames() {
	owner := make(map[string]string) // name -> dir
	var unnamed []int
	for i := range s.Entries {
		e := &s.Entries[i]
		n := e.Manifest.Name
		if !nameRE.MatchString(n) {
			unnamed = append(unnamed, i)
			continue
		}
		if other, dup := owner[n]; dup {
			e.Status = StatusInvalid
			e.Reason = fmt.Sprintf("duplicate plugin name %q: already used by %s", n, other)
			unnamed = append(unnamed, i)
			continue
		}
		owner[n] = e.Dir
		e.Name = n
	}
	for _, i := range unnamed {
		e := &s.Entries[i]
		base := filepath.Base(e.Dir)
		name := base
		for k := 2; owner[name] != ""; k++ {
			name = base + "-" + strconv.Itoa(k)
		}
		owner[name] = e.Dir
		e.Name = name
	}
}

// checkMounts marks invalid every plugin whose mount equals or nests
// with the mount of a plugin in an earlier directory.
func (s *Set) checkMounts() {
	var claimed []*Entry
	for i := range s.Entries {
		e := &s.Entries[i]
		m := e.Manifest.Mount
		if !e.Runnable() || m == "" {
			continue
		}
		for _, o := range claimed {
			other := o.Manifest.Mount
			if m == other || strings.HasPrefix(m, other+"/") || strings.HasPrefix(other, m+"/") {
				e.Status = StatusInvalid
				e.Reason = fmt.Sprintf("mount %q: overlaps the mount %q of plugin %s", m, other, o.Name)
				break
			}
		}
		if e.Status != StatusInvalid {
			claimed = append(claimed, e)
		}
	}
}

// named returns the entry called name. An invalid manifest that could
// not be decoded is called after its directory, so a dependency on it
// still resolves (to an invalid plugin).
func (s *Set) named(name string) *Entry {
	e, ok := s.Lookup(name)
	if !ok {
		return nil
	}
	return e
}

// checkDependencies blocks plugins with an unknown dependency, then,
// until nothing changes, plugins depending on one that cannot run.
func (s *Set) checkDependencies() {
	for i := range s.Entries {
		e := &s.Entries[i]
		if !e.Runnable() {
			continue
		}
		for _, d := range e.Manifest.Dependencies {
			if s.named(d) == nil {
				e.Status, e.Reason = StatusBlocked, fmt.Sprintf("depends on unknown plugin %s", d)
				break
			}
		}
	}
	for changed := true; changed; {
		changed = false
		for i := range s.Entries {
			e := &s.Entries[i]
			if !e.Runnable() {
				continue
			}
			for _, d := range e.Manifest.Dependencies {
				dep := s.named(d)
				if dep.Status == StatusOK || (dep.Status == StatusDisabled && e.Status == StatusDisabled) {
					continue
				}
				e.Status, e.Reason = StatusBlocked, fmt.Sprintf("depends on %s plugin %s", dep.Status, d)
				changed = true
				break
			}
		}
	}
}

// topoOrder orders the runnable entries dependencies first, breaking ties
// by name.
func (s *Set) topoOrder() []string {
	indeg := make(map[string]int)
	users := make(map[string][]string)
	for _, e := range s.Entries {
		if !e.Runnable() {
			continue
		}
		indeg[e.Name] += 0
		for _, d := range e.Manifest.Dependencies {
			indeg[e.Name]++
			users[d] = append(users[d], e.Name)
		}
	}
	var ready, order []string
	for n, k := range indeg {
		if k == 0 {
			ready = append(ready, n)
		}
	}
	for len(ready) > 0 {
		slices.Sort(ready)
		n := ready[0]
		ready = ready[1:]
		order = append(order, n)
		for _, u := range users[n] {
			if indeg[u]--; indeg[u] == 0 {
				ready = append(ready, u)
			}
		}
	}
	return order
}
