package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/home-console/client-manager/internal/access"
	"github.com/home-console/client-manager/internal/cmservice"
	"github.com/home-console/client-manager/internal/sqlite"
)

const tokenUsage = `usage:
  client-manager token create --name NAME --role viewer|operator|admin [--ttl 720h]
  client-manager token list
  client-manager token revoke ID

Works on the store in CLIENT_MANAGER_DATA_DIR, also while the service runs.
The new token is printed once, on stdout; only its hash is stored`

// runToken manages operator tokens from the server host's shell, e.g. to
// create the first admin token when the API is to be used remotely.
func runToken(ctx context.Context, dataDir string, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New(tokenUsage)
	}
	store, err := sqlite.Open(ctx, filepath.Join(dataDir, cmservice.StoreFile))
	if err != nil {
		return err
	}
	defer store.Close()
	tokens := &access.StoreTokens{Store: store}

	switch args[0] {
	case "create":
		fs := flag.NewFlagSet("token create", flag.ContinueOnError)
		name := fs.String("name", "", "who or what the token is for (shown in the audit log)")
		role := fs.String("role", "", "viewer, operator or admin")
		ttl := fs.Duration("ttl", 0, "lifetime (0: never expires)")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		r, err := access.ParseRole(*role)
		if err != nil {
			return err
		}
		if *name == "" {
			return errors.New("token create: --name is required")
		}
		token, _, err := tokens.Create(ctx, *name, r, *ttl, "cli")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(stdout, token)
		return err
	case "list":
		list, err := store.ListOperatorTokens(ctx)
		if err != nil {
			return err
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(list)
	case "revoke":
		if len(args) != 2 {
			return errors.New(tokenUsage)
		}
		return store.RevokeOperatorToken(ctx, args[1], time.Now())
	}
	return errors.New(tokenUsage)
}
