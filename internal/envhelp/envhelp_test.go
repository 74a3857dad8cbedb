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
	for _, line := range []string{"  APP_TIMEOUT=30s\n        how long\n", "  APP_TOKEN (unset)\n        secret\n"} {
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

func TestFormat(t *testing.T) {
	for _, tc := range []struct {
		v    any
		want string
	}{
		{24 * time.Hour, "24h"},
		{720 * time.Hour, "720h"},
		{90 * time.Minute, "1h30m"},
		{2 * time.Minute, "2m"},
		{90 * time.Second, "1m30s"},
		{30 * time.Second, "30s"},
		{1500 * time.Millisecond, "1.5s"},
		{time.Duration(0), "0s"},
		{-time.Hour, "-1h"},
		{[]string(nil), ""},
		{int64(1 << 20), "1048576"},
		{50.0, "50"},
	} {
		if got := Format(tc.v); got != tc.want {
			t.Errorf("Format(%v) = %q, want %q", tc.v, got, tc.want)
		}
	}
}
