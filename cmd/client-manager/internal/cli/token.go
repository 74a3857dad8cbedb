package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/kelseyhightower/envconfig"

	"github.com/home-console/client-manager/internal/access"
	"github.com/home-console/client-manager/internal/cmdflags"
	"github.com/home-console/client-manager/internal/cmservice"
	"github.com/home-console/client-manager/internal/sqlite"
)

const tokenUsageText = `Usage:
  client-manager token create --name NAME --role viewer|operator|admin [--ttl 720h]
  client-manager token list
  client-manager token revoke ID

Manages operator tokens in the store in CLIENT_MANAGER_DATA_DIR (default %s),
also while the service runs. The new token is printed once, on stdout; only
its hash is stored.
`

func tokenUsage(w io.Writer) {
	fmt.Fprintf(w, tokenUsageText, defaults().DataDir)
}

// tokenMain manages operator tokens from the server host's shell, e.g. to
// create the first admin token when the API is to be used remotely. It
// opens the store only once the command line is known to be right, and
// takes no lock: it works beside a running service.
func tokenMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	top := cmdflags.Command{Flags: flag.NewFlagSet("client-manager token", flag.ContinueOnError),
		Usage: tokenUsage, MinArgs: 1, MaxArgs: -1}
	if code, done := top.Parse(args, stdout, stderr); done {
		return code
	}
	args = top.Flags.Args()
	sub := cmdflags.Command{Flags: flag.NewFlagSet("client-manager token "+args[0], flag.ContinueOnError), Usage: tokenUsage}
	var run func(context.Context, *tokenStore) error
	check := func() error { return nil }
	switch args[0] {
	case "create":
		run, check = createFlags(&sub, stdout)
	case "list":
		run = func(ctx context.Context, ts *tokenStore) error { return ts.list(ctx, stdout) }
	case "revoke":
		sub.MinArgs, sub.MaxArgs = 1, 1
		run = func(ctx context.Context, ts *tokenStore) error {
			return ts.store.RevokeOperatorToken(ctx, sub.Flags.Arg(0), time.Now())
		}
	default:
		fmt.Fprintf(stderr, "client-manager token: unknown subcommand %q\n", args[0])
		tokenUsage(stderr)
		return cmdflags.ExitUsage
	}
	if code, done := sub.Parse(args[1:], stdout, stderr); done {
		return code
	}
	if err := check(); err != nil {
		fmt.Fprintln(stderr, "client-manager token:", err)
		sub.Flags.SetOutput(stderr)
		sub.Usage(stderr)
		return cmdflags.ExitUsage
	}
	if err := withStore(ctx, run); err != nil {
		fmt.Fprintln(stderr, "client-manager token:", err)
		var ue usageError
		if errors.As(err, &ue) {
			return cmdflags.ExitUsage
		}
		return cmdflags.ExitError
	}
	return cmdflags.ExitOK
}

// usageError is a command line wrong in a way flag parsing cannot see,
// or a wrong configuration: exit code 2.
type usageError struct{ error }

// createFlags declares the flags of token create on sub. Once they are
// parsed, check validates them and run creates the token.
func createFlags(sub *cmdflags.Command, stdout io.Writer) (run func(context.Context, *tokenStore) error, check func() error) {
	fs := sub.Flags
	name := fs.String("name", "", "who or what the token is for (shown in the audit log)")
	role := fs.String("role", "", "viewer, operator or admin")
	ttl := fs.Duration("ttl", 0, "lifetime (0: never expires)")
	sub.Usage = func(w io.Writer) {
		fmt.Fprintln(w, "Usage: client-manager token create --name NAME --role viewer|operator|admin [--ttl 720h]")
		fmt.Fprintln(w, "\nCreates an operator token and prints it once, on stdout.\n\nFlags:")
		fs.PrintDefaults()
	}
	var r access.Role
	check = func() error {
		var err error
		if r, err = access.ParseRole(*role); err != nil {
			return usageError{fmt.Errorf("--role: %w", err)}
		}
		if *name == "" {
			return usageError{errors.New("--name is required")}
		}
		return nil
	}
	run = func(ctx context.Context, ts *tokenStore) error {
		token, _, err := ts.tokens.Create(ctx, *name, r, *ttl, "cli")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(stdout, token)
		return err
	}
	return run, check
}

// tokenStore is the store opened for a token subcommand.
type tokenStore struct {
	store  *sqlite.Store
	tokens *access.StoreTokens
}

// withStore opens the store of CLIENT_MANAGER_DATA_DIR, runs run on it
// and closes it.
func withStore(ctx context.Context, run func(context.Context, *tokenStore) error) error {
	cfg := defaults()
	if err := envconfig.Process(Prefix, &cfg); err != nil {
		return usageError{fmt.Errorf("configuration: %w", err)}
	}
	store, err := sqlite.Open(ctx, filepath.Join(cfg.DataDir, cmservice.StoreFile))
	if err != nil {
		return err
	}
	defer store.Close()
	return run(ctx, &tokenStore{store: store, tokens: &access.StoreTokens{Store: store}})
}

func (ts *tokenStore) list(ctx context.Context, stdout io.Writer) error {
	list, err := ts.store.ListOperatorTokens(ctx)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(list)
}
