// Package cmdflags gives the project's commands one behaviour for their
// command lines: -h/--help prints the usage on stdout and exits 0,
// --version prints the version and exits 0, and an unknown flag or a
// wrong number of arguments prints the error and the usage on stderr and
// exits 2. In none of these cases has the command done anything yet.
package cmdflags

import (
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/home-console/client-manager/internal/version"
)

// Exit codes of the project's commands.
const (
	ExitOK    = 0 // done, or stopped by a signal
	ExitError = 1 // failed
	ExitUsage = 2 // bad flags, arguments or configuration
)

// Command describes one command line: its flags and how many positional
// arguments follow them.
type Command struct {
	// Flags holds the command's flags; it must be flag.ContinueOnError.
	// Its name is the program name of messages and of --version.
	Flags *flag.FlagSet
	// Usage writes the command's help to w; fs.PrintDefaults called from
	// it writes to w too.
	Usage func(w io.Writer)
	// Version adds --version.
	Version bool
	// MinArgs and MaxArgs bound the positional arguments; MaxArgs < 0
	// means no upper bound.
	MinArgs, MaxArgs int
}

// Parse parses args (without the program name). When done is true the
// command must end at once with code: help or the version was printed,
// or the command line was wrong. Otherwise c.Flags holds the flags and
// c.Flags.Args() the positional arguments.
func (c Command) Parse(args []string, stdout, stderr io.Writer) (code int, done bool) {
	fs := c.Flags
	var showVersion bool
	if c.Version {
		fs.BoolVar(&showVersion, "version", false, "print the version and exit")
	}
	help := func(w io.Writer) {
		fs.SetOutput(w)
		c.Usage(w)
		fs.SetOutput(io.Discard)
	}
	fail := func(format string, a ...any) (int, bool) {
		fmt.Fprintf(stderr, "%s: %s\n", fs.Name(), fmt.Sprintf(format, a...))
		help(stderr)
		return ExitUsage, true
	}
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		help(stdout)
		return ExitOK, true
	case err != nil:
		return fail("%v", err)
	case showVersion:
		fmt.Fprintln(stdout, version.String(fs.Name()))
		return ExitOK, true
	case fs.NArg() < c.MinArgs:
		return fail("missing argument")
	case c.MaxArgs >= 0 && fs.NArg() > c.MaxArgs:
		return fail("unexpected argument %q", fs.Arg(c.MaxArgs))
	}
	return ExitOK, false
}
