package archtest

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// layer is where a package sits in the dependency rule.
type layer string

const (
	// domain: the types and rules of the product; imports domain and
	// shared packages only.
	domain layer = "domain"
	// shared: small primitives and the public protocol contracts; imports
	// shared packages only.
	shared layer = "shared"
	// adapter: a package facing one kind of outside world (a store, a
	// socket, an HTTP API, processes); imports domain and shared packages,
	// never another adapter. They meet through interfaces the consumer
	// declares, wired by an assembly.
	adapter layer = "adapter"
	// assembly: wires the others together; imports anything.
	assembly layer = "assembly"
)

// layers classifies every package of the module below internal/ and pkg/
// by its path relative to the module. Everything below cmd/ and e2e/ is
// assembly. Keep it in step with the table in docs/architecture.md.
var layers = map[string]layer{
	"internal/fleet":       domain,
	"internal/events":      domain,
	"internal/access":      domain,
	"internal/manifest":    domain,
	"internal/pluginstate": domain,

	"internal/atomicfile":   shared,
	"internal/cmdflags":     shared,
	"internal/connlimit":    shared,
	"internal/longlived":    shared,
	"internal/envhelp":      shared,
	"internal/linesplit":    shared,
	"internal/archtest":     shared,
	"internal/dirlock":      shared,
	"internal/drain":        shared,
	"internal/httpjson":     shared,
	"internal/logging":      shared,
	"internal/origin":       shared,
	"internal/ratelimit":    shared,
	"internal/secret":       shared,
	"internal/strictjson":   shared,
	"internal/syncbuf":      shared,
	"internal/testbin":      shared,
	"internal/version":      shared,
	"pkg/agentproto":        shared,
	"pkg/agent/files":       shared, // file access under roots; pkg/agent wires it
	"pkg/agent/terminal":    shared, // PTY sessions; pkg/agent wires it
	"pkg/pluginproto":       shared,
	"pkg/terminalproto":     shared, // the operator's terminal WebSocket contract
	"pkg/agentstream":       shared, // streams with credit flow control over one connection
	"pkg/pluginproto/proto": shared,

	"internal/sqlite":     adapter,
	"internal/hub":        adapter,
	"internal/api":        adapter,
	"internal/enroll":     adapter,
	"internal/dispatch":   adapter,
	"internal/metrics":    adapter,
	"internal/adminapi":   adapter,
	"internal/supervisor": adapter,
	"internal/proxy":      adapter,
	"internal/sessions":   adapter, // operator side of terminals and file transfers
	"pkg/agent":           adapter,

	"internal/cmservice":   assembly,
	"internal/runtimehost": assembly,
	"internal/hub/hubtest": assembly, // test support: a hub over a real store and enrollment

	"internal/sessions/sessionstest": assembly, // test support: fake agents behind sessions.Streams
}

// allowed says which layers each layer may import.
var allowed = map[layer][]layer{
	domain:   {domain, shared},
	shared:   {shared},
	adapter:  {domain, shared},
	assembly: {domain, shared, adapter, assembly},
}

// owners lists, per infrastructure library, the only packages besides
// assemblies that may import it.
var owners = map[string][]string{
	"github.com/coder/websocket":     {"internal/hub", "pkg/agent", "internal/sessions"},
	"modernc.org/sqlite":             {"internal/sqlite"},
	"github.com/hashicorp/go-plugin": {"internal/supervisor", "pkg/pluginproto"},
	"github.com/creack/pty":          {"pkg/agent/terminal"},
}

// pkg is the part of `go list -json` this test reads.
type pkg struct {
	ImportPath string
	Imports    []string
	Module     *struct{ Path string }
}

// module lists the module's packages (non-test code) with their imports,
// keyed by path relative to the module; imports of the module's own
// packages are relative too.
func module(t *testing.T) map[string][]string {
	t.Helper()
	mod, err := exec.Command("go", "list", "-m").Output()
	if err != nil {
		t.Fatalf("go list -m: %v", err)
	}
	prefix := strings.TrimSpace(string(mod)) + "/"
	cmd := exec.Command("go", "list", "-deps", "-json=ImportPath,Imports,Module", prefix+"...")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, stderr.Bytes())
	}
	pkgs := map[string][]string{}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p pkg
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("go list output: %v", err)
		}
		if p.Module == nil || p.Module.Path+"/" != prefix {
			continue
		}
		var imports []string
		for _, imp := range p.Imports {
			imports = append(imports, strings.TrimPrefix(imp, prefix))
		}
		pkgs[strings.TrimPrefix(p.ImportPath, prefix)] = imports
	}
	return pkgs
}

func layerOf(path string) (layer, bool) {
	if path == "cmd" || strings.HasPrefix(path, "cmd/") || path == "e2e" || strings.HasPrefix(path, "e2e/") {
		return assembly, true
	}
	l, ok := layers[path]
	return l, ok
}

// violations checks pkgs against the rule and describes each breach.
func violations(pkgs map[string][]string) []string {
	var out []string
	for path, imports := range pkgs {
		from, ok := layerOf(path)
		if !ok {
			out = append(out, path+" is in no layer: classify it in internal/archtest/deps_test.go and docs/architecture.md")
			continue
		}
		for _, imp := range imports {
			if _, ours := pkgs[imp]; ours {
				if to, ok := layerOf(imp); ok && !slices.Contains(allowed[from], to) {
					out = append(out, path+" ("+string(from)+") imports "+imp+" ("+string(to)+")")
				}
				continue
			}
			for lib, own := range owners {
				if (imp == lib || strings.HasPrefix(imp, lib+"/")) && from != assembly && !slices.Contains(own, path) {
					out = append(out, path+" imports "+imp+", which only "+strings.Join(own, " and ")+" may use")
				}
			}
		}
		if from == adapter {
			out = append(out, adapterPaths(pkgs, path)...)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// adapterPaths finds the other adapters the adapter at start depends on
// through other packages, and shows the import chain to each.
func adapterPaths(pkgs map[string][]string, start string) []string {
	var out []string
	via := map[string]string{start: ""}
	queue := []string{start}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, imp := range pkgs[p] {
			if _, ours := pkgs[imp]; !ours {
				continue
			}
			if _, seen := via[imp]; seen {
				continue
			}
			via[imp] = p
			if l, _ := layerOf(imp); l == adapter {
				if p != start { // a direct import is reported as such
					chain := []string{imp}
					for q := p; q != ""; q = via[q] {
						chain = append([]string{q}, chain...)
					}
					out = append(out, "adapter "+start+" depends on adapter "+imp+": "+strings.Join(chain, " -> "))
				}
				continue
			}
			queue = append(queue, imp)
		}
	}
	return out
}

// TestDependencyRule fails when the module's non-test code breaks the rule
// of docs/architecture.md, listing every breach.
func TestDependencyRule(t *testing.T) {
	if v := violations(module(t)); len(v) > 0 {
		t.Errorf("the dependency rule of docs/architecture.md is broken (%d):\n  %s", len(v), strings.Join(v, "\n  "))
	}
}

// TestViolationsAreFound checks the checker on a made-up module.
func TestViolationsAreFound(t *testing.T) {
	for _, tc := range []struct {
		name string
		pkgs map[string][]string
		want []string
	}{
		{"clean", map[string][]string{
			"internal/api":        {"internal/fleet", "internal/httpjson", "github.com/gin-gonic/gin"},
			"internal/fleet":      nil,
			"internal/httpjson":   nil,
			"internal/cmservice":  {"internal/api", "internal/hub"},
			"internal/hub":        {"internal/fleet", "github.com/coder/websocket"},
			"cmd/runtime":         {"internal/supervisor"},
			"internal/supervisor": {"github.com/hashicorp/go-plugin"},
		}, nil},
		{"adapter imports adapter", map[string][]string{
			"internal/hub":    {"internal/enroll"},
			"internal/enroll": nil,
		}, []string{"internal/hub (adapter) imports internal/enroll (adapter)"}},
		{"adapter reaches adapter through a shared package", map[string][]string{
			"internal/api":      {"internal/httpjson"},
			"internal/httpjson": {"internal/dispatch"},
			"internal/dispatch": nil,
		}, []string{
			"adapter internal/api depends on adapter internal/dispatch: internal/api -> internal/httpjson -> internal/dispatch",
			"internal/httpjson (shared) imports internal/dispatch (adapter)",
		}},
		{"domain imports adapter", map[string][]string{
			"internal/fleet":  {"internal/sqlite"},
			"internal/sqlite": {"modernc.org/sqlite/lib"},
		}, []string{"internal/fleet (domain) imports internal/sqlite (adapter)"}},
		{"library outside its owner", map[string][]string{
			"internal/api": {"github.com/coder/websocket"},
		}, []string{"internal/api imports github.com/coder/websocket, which only internal/hub and pkg/agent and internal/sessions may use"}},
		{"unclassified package", map[string][]string{
			"internal/newthing": nil,
		}, []string{"internal/newthing is in no layer: classify it in internal/archtest/deps_test.go and docs/architecture.md"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := violations(tc.pkgs); !slices.Equal(got, tc.want) {
				t.Errorf("violations:\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}
