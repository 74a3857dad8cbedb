package cmdflags

import (
	"flag"
	"fmt"
	"io"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		args             []string
		version          bool
		minArgs, maxArgs int
		code             int
		done             bool
		stdout, stderr   string // parts of the outputs; "" means empty
	}{
		{nil, true, 0, 0, ExitOK, false, "", ""},
		{[]string{"-n", "3"}, true, 0, 0, ExitOK, false, "", ""},
		{[]string{"-h"}, true, 0, 0, ExitOK, true, "usage of prog", ""},
		{[]string{"--help"}, true, 0, 0, ExitOK, true, "usage of prog", ""},
		{[]string{"-help"}, true, 0, 0, ExitOK, true, "-n int", ""},
		{[]string{"--version"}, true, 0, 0, ExitOK, true, "prog ", ""},
		{[]string{"--version"}, false, 0, 0, ExitUsage, true, "", "not defined: -version"},
		{[]string{"--bogus"}, true, 0, 0, ExitUsage, true, "", "flag provided but not defined: -bogus"},
		{[]string{"stray"}, true, 0, 0, ExitUsage, true, "", `unexpected argument "stray"`},
		{[]string{"-n", "x"}, true, 0, 0, ExitUsage, true, "", "invalid value"},
		{[]string{"id"}, false, 1, 1, ExitOK, false, "", ""},
		{nil, false, 1, 1, ExitUsage, true, "", "missing argument"},
		{[]string{"id", "more"}, false, 1, 1, ExitUsage, true, "", `unexpected argument "more"`},
		{[]string{"sub", "-x", "y"}, false, 1, -1, ExitOK, false, "", ""},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.args, tt.version, tt.minArgs, tt.maxArgs), func(t *testing.T) {
			fs := flag.NewFlagSet("prog", flag.ContinueOnError)
			fs.Int("n", 0, "a number")
			var stdout, stderr strings.Builder
			c := Command{Flags: fs, Version: tt.version, MinArgs: tt.minArgs, MaxArgs: tt.maxArgs, Usage: func(w io.Writer) {
				fmt.Fprintln(w, "usage of prog")
				fs.PrintDefaults()
			}}
			code, done := c.Parse(tt.args, &stdout, &stderr)
			if code != tt.code || done != tt.done {
				t.Fatalf("Parse = %d, %v; want %d, %v", code, done, tt.code, tt.done)
			}
			check := func(name, got, want string) {
				if want == "" && got != "" || !strings.Contains(got, want) {
					t.Errorf("%s = %q, want it to contain %q", name, got, want)
				}
			}
			check("stdout", stdout.String(), tt.stdout)
			check("stderr", stderr.String(), tt.stderr)
			if tt.code == ExitUsage && !strings.Contains(stderr.String(), "usage of prog") {
				t.Errorf("stderr %q lacks the usage", stderr.String())
			}
		})
	}
}
