package archtest

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"strings"
	"testing"
)

// maxFuncLines is the longest a function of non-test code may be, from
// its func keyword to its closing brace.
const maxFuncLines = 60

// longFuncs lists the functions and function literals of src longer than
// maxFuncLines.
func longFuncs(name string, src []byte) ([]string, error) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, name, src, parser.SkipObjectResolution)
	if err != nil {
		return nil, err
	}
	var found []string
	ast.Inspect(f, func(n ast.Node) bool {
		var what string
		switch fn := n.(type) {
		case *ast.FuncDecl:
			what = fn.Name.Name
		case *ast.FuncLit:
			what = "func literal"
		default:
			return true
		}
		start, end := fset.Position(n.Pos()), fset.Position(n.End())
		if lines := end.Line - start.Line + 1; lines > maxFuncLines {
			found = append(found, fmt.Sprintf("%s:%d: %s is %d lines", name, start.Line, what, lines))
		}
		return true
	})
	return found, nil
}

// TestFunctionLength fails on a function of non-test code over
// maxFuncLines lines: split it.
func TestFunctionLength(t *testing.T) {
	if found := eachSource(t, longFuncs); len(found) > 0 {
		t.Errorf("functions over %d lines (%d):\n  %s", maxFuncLines, len(found), strings.Join(found, "\n  "))
	}
}

func TestLongFuncs(t *testing.T) {
	body := strings.Repeat("\t_ = 1\n", maxFuncLines-2)
	for _, tc := range []struct {
		src  string
		want int
	}{
		{"package x\nfunc f() {\n" + body + "}\n", 0},
		{"package x\nfunc f() {\n" + body + "\t_ = 2\n}\n", 1},
		{"package x\nvar g = func() {\n" + body + "\t_ = 2\n}\n", 1},
	} {
		got, err := longFuncs("x.go", []byte(tc.src))
		if err != nil || len(got) != tc.want {
			t.Errorf("longFuncs = %v, %v; want %d findings", got, err, tc.want)
		}
	}
}
