// Package manifest reads and validates plugin manifests.
//
// A plugin lives in its own directory under the plugins directory and is
// described by a plugin.json file there. [Load] decodes and validates one
// manifest strictly; [Discover] loads every manifest of a plugins directory,
// checks them against each other (duplicate names, dependencies) and returns
// a [Set] in which every plugin is either runnable or marked invalid, blocked
// or disabled with a reason.
package manifest

import (
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// FileName is the name of a manifest file inside a plugin directory.
const FileName = "plugin.json"

// Policy says when a supervisor restarts a plugin whose process ended
// without an operator asking for it.
type Policy string

// Restart policies.
const (
	// PolicyAlways restarts after every unrequested exit.
	PolicyAlways Policy = "always"
	// PolicyOnFailure restarts unless the process exited with code 0.
	PolicyOnFailure Policy = "on-failure"
	// PolicyNever never restarts.
	PolicyNever Policy = "never"
)

// Restart is a plugin's restart policy with every default applied.
type Restart struct {
	Policy Policy
	// InitialBackoff is the delay before the first restart; each further
	// restart within Window doubles it, up to MaxBackoff.
	InitialBackoff time.Duration
	MaxBackoff     time.Duration
	// MaxRestarts is how many restarts are allowed within Window; one more
	// failure puts the plugin in the failed state.
	MaxRestarts int
	Window      time.Duration
}

// Manifest is a validated plugin manifest with every default applied.
type Manifest struct {
	Name         string
	Version      string
	Description  string
	Dependencies []string
	// Command is the absolute path of the plugin executable.
	Command string
	Args    []string
	Env     map[string]string
	Enabled bool
	Restart Restart
	// StopTimeout bounds a graceful stop before the process group is
	// signalled.
	StopTimeout time.Duration
	// StartTimeout bounds one launch: the handshake, the Start RPC and
	// readiness.
	StartTimeout time.Duration
	// SHA256 is the expected lower-case hex SHA-256 of Command, "" if none.
	SHA256 string
	// Mount is the path under which the runtime's own port serves the
	// plugin's HTTP API (one-port mode, e.g. "/client-manager"); "" if
	// none. See [ValidMount].
	Mount string
	// Path is the absolute path of the manifest file.
	Path string
}

// Dir returns the directory holding the manifest.
func (m *Manifest) Dir() string { return filepath.Dir(m.Path) }

// Defaults applied to fields a manifest leaves out.
const (
	DefaultInitialBackoff = 250 * time.Millisecond
	DefaultMaxBackoff     = 30 * time.Second
	DefaultMaxRestarts    = 5
	DefaultWindow         = 60 * time.Second
	DefaultStopTimeout    = 10 * time.Second
	DefaultStartTimeout   = 30 * time.Second
)

var (
	nameRE = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,62}$`)
	// mountSegmentRE is one path segment of a mount: unreserved
	// characters only, so the path needs no escaping.
	mountSegmentRE = regexp.MustCompile(`^[A-Za-z0-9._~-]+$`)
	// semverRE is the regular expression published with Semantic
	// Versioning 2.0.0.
	semverRE = regexp.MustCompile(`^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)` +
		`(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?` +
		`(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$`)
)

// Load reads and validates the manifest at path. The returned error
// explains the first defect found; when the manifest could be decoded, the
// returned Manifest carries the fields read (notably Name and Dependencies)
// even if validation failed.
func Load(path string) (Manifest, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return Manifest{}, fmt.Errorf("manifest path: %w", err)
	}
	data, err := os.ReadFile(abs)
	if err != nil {
		return Manifest{}, fmt.Errorf("read manifest: %w", err)
	}
	raw, err := decode(data)
	if err != nil {
		return Manifest{}, err
	}
	m := Manifest{
		Name:         raw.Name,
		Version:      raw.Version,
		Description:  raw.Description,
		Dependencies: raw.Dependencies,
		Args:         raw.Args,
		Env:          raw.Env,
		Enabled:      raw.Enabled == nil || *raw.Enabled,
		SHA256:       strings.ToLower(raw.SHA256),
		Path:         abs,
	}
	if raw.Mount != nil {
		m.Mount = *raw.Mount
	}
	if err := m.apply(raw); err != nil {
		return m, err
	}
	return m, nil
}

// apply validates raw and fills in the fields of m that need conversion.
func (m *Manifest) apply(raw *rawManifest) error {
	if err := validateIdentity(raw); err != nil {
		return err
	}
	if err := validateDependencies(raw.Name, raw.Dependencies); err != nil {
		return err
	}
	cmd, err := resolveCommand(m.Dir(), raw.Command)
	if err != nil {
		return err
	}
	m.Command = cmd
	if m.Restart, err = raw.Restart.resolve(); err != nil {
		return err
	}
	if m.StopTimeout, err = duration("stop_timeout", raw.StopTimeout, DefaultStopTimeout); err != nil {
		return err
	}
	if m.StartTimeout, err = duration("start_timeout", raw.StartTimeout, DefaultStartTimeout); err != nil {
		return err
	}
	if m.SHA256 != "" {
		if b, err := hex.DecodeString(m.SHA256); err != nil || len(b) != 32 {
			return errors.New("sha256: want 64 hex digits")
		}
	}
	if raw.Mount != nil {
		if err := ValidMount(*raw.Mount); err != nil {
			return err
		}
	}
	for k := range raw.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return fmt.Errorf("env: invalid variable name %q", k)
		}
	}
	return nil
}

// ValidMount checks a mount path: "/" followed by one or more segments
// of letters, digits, ".", "_", "~" and "-" separated by single "/", no
// "." or ".." segment, no trailing "/". The root is not a mount (every
// other path would be the plugin's), and neither is /api or a path below
// it (the runtime's admin API lives there).
func ValidMount(m string) error {
	fail := func(why string) error { return fmt.Errorf("mount %q: %s", m, why) }
	switch {
	case !strings.HasPrefix(m, "/"):
		return fail(`must start with "/"`)
	case m == "/":
		return fail("the root cannot be a mount; use a path such as /client-manager")
	case strings.HasSuffix(m, "/"):
		return fail(`must not end with "/"`)
	case m == "/api" || strings.HasPrefix(m, "/api/"):
		return fail("/api is reserved for the runtime's own API")
	}
	for _, seg := range strings.Split(m[1:], "/") {
		switch {
		case seg == "":
			return fail(`empty path segment ("//")`)
		case seg == "." || seg == "..":
			return fail(`"." and ".." segments are not allowed`)
		case !mountSegmentRE.MatchString(seg):
			return fail(`segments may only hold letters, digits, ".", "_", "~" and "-"`)
		}
	}
	return nil
}

func validateIdentity(raw *rawManifest) error {
	switch {
	case raw.Name == "":
		return errors.New("name: required")
	case !nameRE.MatchString(raw.Name):
		return fmt.Errorf("name %q: must match %s", raw.Name, nameRE)
	case raw.Version == "":
		return errors.New("version: required")
	case !semverRE.MatchString(raw.Version):
		return fmt.Errorf("version %q: not a semantic version (semver 2.0, e.g. 1.2.3)", raw.Version)
	}
	return nil
}

func validateDependencies(name string, deps []string) error {
	seen := make(map[string]bool, len(deps))
	for _, d := range deps {
		switch {
		case !nameRE.MatchString(d):
			return fmt.Errorf("dependencies: %q is not a valid plugin name", d)
		case seen[d]:
			return fmt.Errorf("dependencies: %q listed twice", d)
		}
		seen[d] = true
	}
	if seen[name] {
		return fmt.Errorf("dependency cycle: %s -> %s", name, name)
	}
	return nil
}

// resolveCommand returns the absolute path of command, relative to dir
// unless absolute, after checking it is an executable regular file.
func resolveCommand(dir, command string) (string, error) {
	if command == "" {
		return "", errors.New("command: required")
	}
	path := command
	if !filepath.IsAbs(path) {
		path = filepath.Join(dir, path)
	}
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return "", fmt.Errorf("command %q: %s does not exist (build it first, e.g. make build)", command, path)
	case err != nil:
		return "", fmt.Errorf("command %q: %w", command, err)
	case !fi.Mode().IsRegular():
		return "", fmt.Errorf("command %q: %s is not a regular file", command, path)
	case fi.Mode().Perm()&0o111 == 0:
		return "", fmt.Errorf("command %q: %s is not executable", command, path)
	}
	return path, nil
}

func (r *rawRestart) resolve() (Restart, error) {
	if r == nil {
		r = &rawRestart{}
	}
	out := Restart{Policy: PolicyAlways, MaxRestarts: DefaultMaxRestarts}
	switch Policy(r.Policy) {
	case "":
	case PolicyAlways, PolicyOnFailure, PolicyNever:
		out.Policy = Policy(r.Policy)
	default:
		return out, fmt.Errorf("restart.policy %q: want always, on-failure or never", r.Policy)
	}
	var err error
	if out.InitialBackoff, err = duration("restart.initial_backoff", r.InitialBackoff, DefaultInitialBackoff); err != nil {
		return out, err
	}
	if out.MaxBackoff, err = duration("restart.max_backoff", r.MaxBackoff, DefaultMaxBackoff); err != nil {
		return out, err
	}
	if out.Window, err = duration("restart.window", r.Window, DefaultWindow); err != nil {
		return out, err
	}
	if out.MaxBackoff < out.InitialBackoff {
		return out, fmt.Errorf("restart.max_backoff %s: less than initial_backoff %s", out.MaxBackoff, out.InitialBackoff)
	}
	if r.MaxRestarts != nil {
		if *r.MaxRestarts < 0 {
			return out, fmt.Errorf("restart.max_restarts %d: must not be negative", *r.MaxRestarts)
		}
		out.MaxRestarts = *r.MaxRestarts
	}
	return out, nil
}

// duration parses a positive Go duration string, def if s is nil.
func duration(field string, s *string, def time.Duration) (time.Duration, error) {
	if s == nil {
		return def, nil
	}
	d, err := time.ParseDuration(*s)
	if err != nil {
		return 0, fmt.Errorf("%s %q: not a duration (use e.g. \"250ms\", \"30s\", \"1m\")", field, *s)
	}
	if d <= 0 {
		return 0, fmt.Errorf("%s %q: must be positive", field, *s)
	}
	return d, nil
}
