// Package envhelp describes the environment variables of an envconfig
// specification for a command's --help: each variable's name (as
// envconfig.Process derives it), its default and its description. The
// default is the value the specification holds before envconfig.Process
// runs, so a command that fills its specification from the packages'
// defaults prints those defaults, and no default is written twice.
package envhelp

import (
	"fmt"
	"io"
	"reflect"
	"strings"
	"text/template"
	"time"

	"github.com/kelseyhightower/envconfig"
)

// Var is one environment variable.
type Var struct {
	// Key is the variable's name, e.g. RUNTIME_PORT.
	Key string
	// Default is the value used when the variable is unset, as it would
	// be written in the environment ("30s", "a,b"); "" when there is none.
	Default string
	// Desc is the field's `desc` tag.
	Desc string
}

// Vars returns the variables of spec (a pointer to a struct, as for
// envconfig.Process with prefix) in field order, with spec's current
// field values as their defaults.
func Vars(prefix string, spec any) ([]Var, error) {
	var vars []Var
	collect := func(key string, field reflect.Value, desc string) string {
		vars = append(vars, Var{Key: key, Default: Format(field.Interface()), Desc: desc})
		return ""
	}
	tmpl := template.Must(template.New("vars").Funcs(template.FuncMap{"collect": collect}).
		Parse(`{{range .}}{{collect .Key .Field (.Tags.Get "desc")}}{{end}}`))
	if err := envconfig.Usaget(prefix, spec, io.Discard, tmpl); err != nil {
		return nil, fmt.Errorf("environment variables: %w", err)
	}
	return vars, nil
}

// Format writes v as it would be set in the environment: durations as Go
// durations without zero minutes or seconds ("24h", "90s", "1h30m"),
// lists comma-separated, numbers in decimal.
func Format(v any) string {
	switch x := v.(type) {
	case time.Duration:
		s := x.String()
		if strings.HasSuffix(s, "m0s") {
			s = strings.TrimSuffix(s, "0s")
		}
		if strings.HasSuffix(s, "h0m") {
			s = strings.TrimSuffix(s, "0m")
		}
		return s
	case []string:
		return strings.Join(x, ",")
	}
	return fmt.Sprint(v)
}

// Write prints vars, two lines each: "  KEY=DEFAULT" (or "  KEY (unset)"
// when there is no default), then the description indented.
func Write(w io.Writer, vars []Var) error {
	for _, v := range vars {
		head := v.Key + "=" + v.Default
		if v.Default == "" {
			head = v.Key + " (unset)"
		}
		if _, err := fmt.Fprintf(w, "  %s\n        %s\n", head, v.Desc); err != nil {
			return err
		}
	}
	return nil
}
