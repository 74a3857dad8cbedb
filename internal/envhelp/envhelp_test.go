package envhelp

import (
	"strings"
	"testing"
	"time"
)

type spec struct {
	Host    string        `envconfig:"HOST" desc:"listen address"`
	Port    int           `envconfig:"PORT" desc:"listen port"`
	Rate    float64       `envconfig:"RATE" desc:"per second"`
	Timeout time.Duration `envconfig:"TIMEOUT" desc:"how long"`
	List    []string      `envconfig:"LIST" desc:"names"`
	Token   string        `envconfig:"TOKEN" desc:"secret"`
}

func TestVarsShowTheCurrentValuesAsDefaults(t *testing.T) {
	s := spec{Host: "127.0.0.1", Port: 8000, Rate: 2.5, Timeout: 30 * time.Second, List: []string{"a", "b"}}
	vars, err := Vars("APP", &s)
	if err != nil {
		t.Fatal(err)
	}
	want := []Var{
		{"APP_HOST", "127.0.0.1", "listen address"},
		{"APP_PORT", "8000", "listen port"},
		{"APP_RATE", "2.5", "per second"},
		{"APP_TIMEOUT", "30s", "how long"},
		{"APP_LIST", "a,b", "names"},
		{"APP_TOKEN", "", "secret"},
	}
	if len(vars) != len(want) {
		t.Fatalf("vars %+v, want %+v", vars, want)
	}
	for i := range want {
		if vars[i] != want[i] {
			t.Errorf("var %d = %+v, want %+v", i, vars[i], want[i])
		}
	}
	var out strings.Builder
	if err := Write(&out, vars); err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{"APP_TIMEOUT  30s        how long", "APP_TOKEN    -          secret"} {
		if !strings.Contains(out.String(), line) {
			t.Errorf("table %q lacks %q", out.String(), line)
		}
	}
}

func TestVarsRejectsANonStruct(t *testing.T) {
	n := 1
	if _, err := Vars("APP", &n); err == nil {
		t.Fatal("Vars of an *int succeeded")
	}
}
