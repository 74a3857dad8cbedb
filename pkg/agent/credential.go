package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/home-console/client-manager/internal/atomicfile"
	"github.com/home-console/client-manager/pkg/agentproto"
)

// StoredCredential is the content of an agent's credential file.
type StoredCredential struct {
	// Server is the base URL the credential was issued by (informational:
	// a credential is valid only at the server that issued it).
	Server     string `json:"server,omitempty"`
	AgentID    string `json:"agent_id"`
	Credential string `json:"credential"`
}

// SaveCredential writes c to path as JSON, readable by the owner only
// (mode 0600; a missing directory is created with mode 0700). It replaces
// path atomically (internal/atomicfile), so path holds either the old or
// the new credential, never a partial one.
func SaveCredential(path string, c StoredCredential) error {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return fmt.Errorf("save credential: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("save credential: %w", err)
	}
	if err := atomicfile.Write(path, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("save credential: %w", err)
	}
	return nil
}

// LoadCredential reads a credential file written by [SaveCredential]. If the
// file does not exist the error matches both [ErrNoCredential] and
// fs.ErrNotExist; a file without a well-formed credential is an error.
func LoadCredential(path string) (StoredCredential, error) {
	var c StoredCredential
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return c, fmt.Errorf("%w: %w", ErrNoCredential, err)
	}
	if err != nil {
		return c, fmt.Errorf("load credential: %w", err)
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("load credential %s: %w", path, err)
	}
	if _, _, err := agentproto.ParseCredential(c.Credential); err != nil {
		return StoredCredential{}, fmt.Errorf("load credential %s: %w", path, err)
	}
	return c, nil
}
