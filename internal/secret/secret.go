// Package secret generates random secrets (agent credentials, enrollment and
// operator tokens) and hashes them for storage. Secrets carry 256 bits of
// entropy, so a single SHA-256 is a sufficient one-way hash; comparisons are
// constant-time.
package secret

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
)

// New returns a random 256-bit secret, URL-safe base64 without padding.
func New() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms
	return base64.RawURLEncoding.EncodeToString(b)
}

// NewID returns a random identifier: prefix followed by 24 hex characters.
func NewID(prefix string) string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// Hash returns the stored form of s.
func Hash(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

// Matches reports, in constant time, whether s hashes to hash.
func Matches(s string, hash []byte) bool {
	h := Hash(s)
	return subtle.ConstantTimeCompare(h, hash) == 1
}
