package archtest

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// renamedKeys are log keys the project does not use, with the key it uses
// instead (docs/architecture.md, "One vocabulary").
var renamedKeys = map[string]string{
	"client_id": "agent_id",
	"error":     "err",
}

// msgIndex is the position of the message among the arguments of each
// log/slog logging method; the key-value pairs follow it.
var msgIndex = map[string]int{
	"Debug": 0, "Info": 0, "Warn": 0, "Error": 0,
	"DebugContext": 1, "InfoContext": 1, "WarnContext": 1, "ErrorContext": 1,
	"Log": 2,
}

// attrFuncs are the slog constructors of one attribute, key first.
var attrFuncs = []string{"String", "Int", "Int64", "Uint64", "Float64", "Bool", "Time", "Duration", "Any", "Group"}

// stringLit returns the value of a string literal.
func stringLit(e ast.Expr) (string, bool) {
	lit, ok := e.(*ast.BasicLit)
	if !ok || lit.Kind != token.STRING {
		return "", false
	}
	s, err := strconv.Unquote(lit.Value)
	return s, err == nil
}

// logKeys returns the literal keys of a logging call: the keys of its
// key-value pairs and of the slog.X("key", ...) attributes among them. A
// call that is not logging (its message is not a string literal) has none.
func logKeys(call *ast.CallExpr) []string {
	sel, ok := call.Fun.(*ast.SelectorExpr)
	if !ok {
		return nil
	}
	if x, ok := sel.X.(*ast.Ident); ok && x.Name == "slog" && slices.Contains(attrFuncs, sel.Sel.Name) && len(call.Args) > 0 {
		if k, ok := stringLit(call.Args[0]); ok {
			return []string{k}
		}
		return nil
	}
	m, ok := msgIndex[sel.Sel.Name]
	if !ok || len(call.Args) <= m {
		return nil
	}
	if _, ok := stringLit(call.Args[m]); !ok {
		return nil
	}
	var keys []string
	for i := m + 1; i < len(call.Args); {
		k, ok := stringLit(call.Args[i])
		if !ok { // an slog.Attr (checked on its own) or a computed key
			i++
			continue
		}
		keys = append(keys, k)
		i += 2
	}
	return keys
}

// checkLogKeys reports every renamed key in the logging calls of the Go
// source src (named name).
func checkLogKeys(name string, src []byte) ([]string, error) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, name, src, 0)
	if err != nil {
		return nil, err
	}
	var out []string
	ast.Inspect(f, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok {
			return true
		}
		for _, k := range logKeys(call) {
			if want, bad := renamedKeys[k]; bad {
				out = append(out, fset.Position(call.Pos()).String()+": log key "+strconv.Quote(k)+", want "+strconv.Quote(want))
			}
		}
		return true
	})
	return out, nil
}

// TestLogKeys fails when non-test code logs an agent as "client_id" or an
// error as "error".
func TestLogKeys(t *testing.T) {
	if found := eachSource(t, checkLogKeys); len(found) > 0 {
		t.Errorf("log keys outside the vocabulary (%d):\n  %s", len(found), strings.Join(found, "\n  "))
	}
}

// eachSource runs check over every non-test, non-generated Go file of the
// module (path relative to the module root) and returns what it found.
func eachSource(t *testing.T, check func(rel string, src []byte) ([]string, error)) []string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) && path != root {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") || strings.HasSuffix(path, ".pb.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		v, err := check(rel, src)
		found = append(found, v...)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

func TestCheckLogKeys(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		want       int
	}{
		{"vocabulary", `log.Info("agent connected", "agent_id", id, "err", err)`, 0},
		{"client_id", `log.Info("command finished", "command_id", c, "client_id", id)`, 1},
		{"error", `log.Warn("failed", "error", err)`, 1},
		{"context variant", `log.ErrorContext(ctx, "failed", "error", err)`, 1},
		{"Log", `log.Log(ctx, slog.LevelInfo, "x", "client_id", id, "error", err)`, 2},
		{"attribute", `log.Info("x", slog.String("client_id", id), "agent_id", id)`, 1},
		{"value equal to a key is not a key", `log.Info("x", "reason", "error")`, 0},
		{"not a logging call", `httpjson.Error(c, 400, "error", "client_id")`, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := checkLogKeys("x.go", []byte("package x\nfunc f() {\n"+tc.body+"\n}\n"))
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != tc.want {
				t.Errorf("found %q, want %d", got, tc.want)
			}
		})
	}
}
