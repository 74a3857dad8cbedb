package enroll

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/home-console/client-manager/internal/atomicfile"
	"github.com/home-console/client-manager/internal/secret"
)

// BootstrapFile is the name of the bootstrap token file in the data dir.
const BootstrapFile = "bootstrap-token"

// EnsureBootstrapToken makes sure an enrollment token is available to the
// machine's operator on first start, and returns the file's path.
//
// If <dataDir>/bootstrap-token does not exist, it creates a token
// (Options.BootstrapUses uses, valid for Options.BootstrapTTL; by default
// 10 uses within 24 hours) and writes it there atomically with mode 0600
// (the directory is created 0700 if missing). If the file exists it is
// kept as is, even once its token has lapsed: a warning is logged, and the
// operator either creates a token through the admin API or deletes the
// file to get a fresh one on the next start. The token is never logged.
func (s *Service) EnsureBootstrapToken(ctx context.Context, dataDir string) (string, error) {
	path := filepath.Join(dataDir, BootstrapFile)
	existing, err := os.ReadFile(path)
	switch {
	case err == nil:
		s.checkBootstrap(ctx, path, string(bytes.TrimSpace(existing)))
		return path, nil
	case !errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("enroll: read bootstrap token: %w", err)
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return "", fmt.Errorf("enroll: bootstrap token: %w", err)
	}
	ttl := max(s.opts.BootstrapTTL, 0)
	token, t, err := s.CreateToken(ctx, "bootstrap", s.opts.BootstrapUses, ttl, "bootstrap")
	if err != nil {
		return "", err
	}
	if err := atomicfile.Write(path, []byte(token+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("enroll: bootstrap token: %w", err)
	}
	s.log.Info("bootstrap enrollment token written", "path", path, "token_id", t.ID,
		"uses", t.UsesLeft, "expires_at", t.ExpiresAt)
	return path, nil
}

// checkBootstrap warns when the token in an existing bootstrap file can no
// longer enroll anything.
func (s *Service) checkBootstrap(ctx context.Context, path, token string) {
	tokens, err := s.store.ListEnrollmentTokens(ctx)
	if err != nil {
		s.log.Warn("cannot check the bootstrap token", "path", path, "err", err)
		return
	}
	now := s.opts.Now()
	for _, t := range tokens {
		if !secret.Matches(token, t.Hash) {
			continue
		}
		if t.UsesLeft > 0 && (t.ExpiresAt.IsZero() || now.Before(t.ExpiresAt)) {
			return
		}
		break
	}
	s.log.Warn("the bootstrap token file holds a token that can no longer enroll agents; "+
		"create one through the admin API, or delete the file to get a new one on the next start", "path", path)
}
