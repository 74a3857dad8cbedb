package fleet

import "errors"

// Errors of agent authentication, checked with errors.Is. The
// authenticator (internal/enroll) returns them; the agent endpoint
// (internal/hub) answers them with 401 unauthorized and 401 revoked.
var (
	// ErrCredentialInvalid means an agent credential is malformed, names
	// an unknown agent or carries the wrong secret. Which of these is not
	// disclosed.
	ErrCredentialInvalid = errors.New("invalid agent credential")
	// ErrCredentialRevoked means the credential is valid but the agent
	// was revoked.
	ErrCredentialRevoked = errors.New("agent credential revoked")
)
