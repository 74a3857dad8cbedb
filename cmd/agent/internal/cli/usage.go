package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/home-console/client-manager/internal/version"
)

// commandLine is a flag set with the conventions every agent command
// follows: -h/--help prints the usage to stdout, --version the version to
// stdout, and an unknown flag, a bad flag value or a stray argument prints
// the error and the usage to stderr. None of them does anything else.
type commandLine struct {
	fs      *flag.FlagSet
	header  string // the usage text printed before the flags
	version bool
}

// newCommandLine returns a commandLine named name (as in its messages)
// with the --version flag registered; header is printed before the flags
// in the usage.
func newCommandLine(name, header string) *commandLine {
	c := &commandLine{fs: flag.NewFlagSet(name, flag.ContinueOnError), header: header}
	c.fs.BoolVar(&c.version, "version", false, "print the version and exit")
	return c
}

// parse parses args. It reports done with the exit code when the command
// must end at once: ExitOK after printing the usage (-h, --help) or the
// version (--version), ExitUsage after reporting an unknown flag, a bad
// flag value or a stray argument. The flags are set only when done is
// false.
func (c *commandLine) parse(args []string, stdout, stderr io.Writer) (code int, done bool) {
	c.fs.SetOutput(io.Discard) // errors and usage are printed below
	c.fs.Usage = func() {}
	err := c.fs.Parse(args)
	if err == nil && c.fs.NArg() > 0 {
		err = fmt.Errorf("unexpected argument %q", c.fs.Arg(0))
	}
	switch {
	case errors.Is(err, flag.ErrHelp):
		c.usage(stdout)
		return ExitOK, true
	case err != nil:
		fmt.Fprintf(stderr, "%s: %v\n", c.fs.Name(), err)
		c.usage(stderr)
		return ExitUsage, true
	case c.version:
		fmt.Fprintln(stdout, version.String("agent"))
		return ExitOK, true
	}
	return ExitOK, false
}

// usage writes the header and the flags with their defaults to w.
func (c *commandLine) usage(w io.Writer) {
	fmt.Fprint(w, c.header, "\nFlags:\n")
	c.fs.SetOutput(w)
	c.fs.PrintDefaults()
	c.fs.SetOutput(io.Discard)
}
