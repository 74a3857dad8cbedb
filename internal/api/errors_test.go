package api

import (
	"context"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/home-console/client-manager/internal/fleet"
	"github.com/home-console/client-manager/internal/origin"
)

// errorCodeConsts returns the values of the fleet.ErrorCode constants
// declared in the non-test Go files of dir.
func errorCodeConsts(t *testing.T, dir string) map[fleet.ErrorCode]bool {
	t.Helper()
	fset := token.NewFileSet()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	codes := map[fleet.ErrorCode]bool{}
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			spec, ok := n.(*ast.ValueSpec)
			if !ok || typeName(spec.Type) != "ErrorCode" {
				return true
			}
			for _, v := range spec.Values {
				if lit, ok := v.(*ast.BasicLit); ok && lit.Kind == token.STRING {
					s, _ := strconv.Unquote(lit.Value)
					codes[fleet.ErrorCode(s)] = true
				}
			}
			return true
		})
	}
	return codes
}

// typeName is the name of a type expression: T or pkg.T.
func typeName(e ast.Expr) string {
	switch e := e.(type) {
	case *ast.Ident:
		return e.Name
	case *ast.SelectorExpr:
		return e.Sel.Name
	}
	return ""
}

// TestEveryErrorCodeHasAStatusAndIsDocumented: each error code declared
// in internal/api and internal/fleet is in the one status table (the
// enrollment endpoint's invalid_token aside), and docs/api.md names every
// code the API answers with.
func TestEveryErrorCodeHasAStatusAndIsDocumented(t *testing.T) {
	declared := errorCodeConsts(t, ".")
	fleetCodes := errorCodeConsts(t, filepath.Join("..", "fleet"))
	if len(declared) < 5 || len(fleetCodes) < 5 {
		t.Fatalf("found %d api and %d fleet codes: the scan is broken", len(declared), len(fleetCodes))
	}
	for code := range fleetCodes {
		declared[code] = true
	}
	delete(declared, fleet.CodeTokenInvalid) // answered by POST /api/enroll (internal/enroll)
	for code := range declared {
		if _, ok := statusOf[code]; !ok {
			t.Errorf("code %q has no status in statusOf", code)
		}
	}
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "api.md"))
	if err != nil {
		t.Fatal(err)
	}
	documented := []string{origin.Code}
	for code := range statusOf {
		documented = append(documented, string(code))
	}
	for _, code := range documented {
		if !strings.Contains(string(doc), "`"+code+"`") {
			t.Errorf("docs/api.md does not mention error code `%s`", code)
		}
	}
}

// TestOneErrorWriter: only fail writes error answers in this package, so
// every status comes from statusOf.
func TestOneErrorWriter(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		n := strings.Count(string(b), "httpjson.Error(") + strings.Count(string(b), "httpjson.Write(") +
			strings.Count(string(b), "AbortWithStatusJSON(")
		if strings.HasSuffix(name, "_test.go") || name == "errors.go" && n == 1 {
			continue
		}
		if n > 0 {
			t.Errorf("%s writes %d error answers itself; use fail", name, n)
		}
	}
}

func TestDetail(t *testing.T) {
	tests := []struct {
		name    string
		err     error
		code    fleet.ErrorCode
		status  int
		message string
	}{
		{"coded", fleet.Errorf(codeInvalidQuery, "limit must be small"), codeInvalidQuery, 400, "limit must be small"},
		{"wrapped sentinel", fmt.Errorf("dispatch: %w", fleet.ErrAgentOffline), fleet.CodeAgentOffline, 409, "dispatch: agent offline"},
		{"invalid command", fmt.Errorf("%w: command must not be empty", fleet.ErrInvalidCommand), fleet.CodeInvalidCommand, 400,
			"invalid command request: command must not be empty"},
		{"deadline", fmt.Errorf("sqlite: %w", context.DeadlineExceeded), fleet.CodeUnavailable, 503, "request cancelled or timed out"},
		{"uncoded", errors.New("disk I/O error /var/lib/secret"), fleet.CodeInternal, 500, "internal error"},
		{"storage unavailable: the store's reason", fmt.Errorf("dispatch: submit: %w", fmt.Errorf("sqlite: create command c1: %w",
			&fleet.Error{Code: fleet.CodeStorageUnavailable, Message: "storage unavailable: the disk holding the store is full (SQLITE_FULL)",
				Cause: errors.New("database or disk is full (13)")})),
			fleet.CodeStorageUnavailable, 503, "storage unavailable: the disk holding the store is full (SQLITE_FULL)"},
		{"code without a status", fleet.Errorf("made_up", "x"), fleet.CodeInternal, 500, "internal error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := detail(tt.err)
			if d.Code != string(tt.code) || statusOf[tt.code] != tt.status || d.Message != tt.message {
				t.Fatalf("detail = %+v (status %d), want %s %d %q", d, statusOf[fleet.ErrorCode(d.Code)], tt.code, tt.status, tt.message)
			}
		})
	}
	if statusOf[fleet.CodeNotFound] != http.StatusNotFound {
		t.Fatal("not_found is not 404")
	}
}
