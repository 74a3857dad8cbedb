package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

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
// (mode 0600; a missing directory is created with mode 0700). It writes a
// temporary file in the same directory and renames it over path, so path
// holds either the old or the new credential, never a partial one.
func SaveCredential(path string, c StoredCredential) error {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return fmt.Errorf("save credential: %w", err)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("save credential: %w", err)
	}
	f, err := os.CreateTemp(dir, ".credential-*.tmp")
	if err != nil {
		return fmt.Errorf("save credential: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // fails harmlessly after the rename
	err = f.Chmod(0o600)
	if err == nil {
		_, err = f.Write(append(b, '\n'))
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
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
