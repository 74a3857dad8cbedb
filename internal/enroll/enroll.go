// Package enroll turns enrollment tokens into agent identities and checks
// the credentials agents present on every connection.
//
// An operator (or the bootstrap file written on first start) hands an agent
// an enrollment token "cmet_…". The agent POSTs it to /api/enroll once and
// receives its permanent credential "<agent id>.<secret>". The store keeps
// only SHA-256 hashes of tokens and secrets; comparisons are constant-time.
// Neither tokens nor credentials are ever logged.
package enroll

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/home-console/client-manager/internal/events"
	"github.com/home-console/client-manager/internal/fleet"
	"github.com/home-console/client-manager/internal/origin"
	"github.com/home-console/client-manager/internal/ratelimit"
	"github.com/home-console/client-manager/internal/secret"
	"github.com/home-console/client-manager/pkg/agentproto"
)

// TokenPrefix starts every enrollment token.
const TokenPrefix = "cmet_"

// AuditRole is the role of enrollment entries in the audit log: their
// actor is an enrollment token, not an operator.
const AuditRole = "enrollment"

// ErrInvalidRequest means an enrollment or token request is malformed;
// checked with errors.Is. Authentication returns the errors of
// internal/fleet (fleet.ErrCredentialInvalid, fleet.ErrCredentialRevoked).
var ErrInvalidRequest = errors.New("invalid request")

// Limits on what an enrolling agent may claim about itself.
const (
	maxNameLen   = 128
	maxFieldLen  = 255
	maxLabels    = 64
	maxLabelKey  = 63
	maxTokenUses = 100000
)

// Options tune a Service. Zero fields take the documented defaults.
type Options struct {
	// AttemptsPerMinute is the steady rate of enrollment attempts allowed
	// per remote IP (default 10). Excess attempts get 429.
	AttemptsPerMinute int
	// AttemptBurst is how many attempts an IP may make at once
	// (default AttemptsPerMinute).
	AttemptBurst int
	// BootstrapUses is how many agents the bootstrap token enrolls
	// (default 10).
	BootstrapUses int
	// BootstrapTTL is how long the bootstrap token stays valid (default
	// 24h; negative means it never expires). After it lapses, operators
	// create tokens through the admin API.
	BootstrapTTL time.Duration
	// Now returns the current time (default time.Now).
	Now func() time.Time
	// Origins lists the browser origins allowed to enroll besides
	// same-origin pages (403 origin_not_allowed for others); the zero
	// value allows none. Agents send no Origin header.
	Origins origin.Policy
}

func (o Options) withDefaults() Options {
	if o.AttemptsPerMinute <= 0 {
		o.AttemptsPerMinute = 10
	}
	if o.AttemptBurst <= 0 {
		o.AttemptBurst = o.AttemptsPerMinute
	}
	if o.BootstrapUses <= 0 {
		o.BootstrapUses = 10
	}
	if o.BootstrapTTL == 0 {
		o.BootstrapTTL = 24 * time.Hour
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// Service enrolls and authenticates agents. It is safe for concurrent use.
type Service struct {
	store   fleet.Store
	bus     *events.Bus
	log     *slog.Logger
	opts    Options
	limiter *ratelimit.Limiter // attempts per remote IP
	// dummyHash is compared against when the agent is unknown, so an
	// unknown id costs the same hashing work as a wrong secret.
	dummyHash []byte
}

// New returns a Service over store. Events (client.enrolled,
// client.revoked) are published on bus.
func New(store fleet.Store, bus *events.Bus, log *slog.Logger, opts Options) *Service {
	opts = opts.withDefaults()
	perSecond := float64(opts.AttemptsPerMinute) / 60
	return &Service{
		store:     store,
		bus:       bus,
		log:       log,
		opts:      opts,
		limiter:   ratelimit.New(perSecond, opts.AttemptBurst, 0),
		dummyHash: secret.Hash(secret.New()),
	}
}

// CreateToken creates an enrollment token good for uses enrollments that
// expires after ttl (0 = never). The token itself is returned only here;
// the store keeps its hash. Bad arguments return ErrInvalidRequest.
func (s *Service) CreateToken(ctx context.Context, name string, uses int, ttl time.Duration, createdBy string) (string, fleet.EnrollmentToken, error) {
	if uses < 1 || uses > maxTokenUses {
		return "", fleet.EnrollmentToken{}, fmt.Errorf("%w: uses must be between 1 and %d", ErrInvalidRequest, maxTokenUses)
	}
	if ttl < 0 {
		return "", fleet.EnrollmentToken{}, fmt.Errorf("%w: ttl must not be negative", ErrInvalidRequest)
	}
	if len(name) > maxNameLen {
		return "", fleet.EnrollmentToken{}, fmt.Errorf("%w: name longer than %d bytes", ErrInvalidRequest, maxNameLen)
	}
	now := s.opts.Now().UTC()
	token := TokenPrefix + secret.New()
	t := fleet.EnrollmentToken{
		ID:        secret.NewID("tok_"),
		Name:      name,
		Hash:      secret.Hash(token),
		UsesLeft:  uses,
		CreatedAt: now,
		CreatedBy: createdBy,
	}
	if ttl > 0 {
		t.ExpiresAt = now.Add(ttl)
	}
	if err := s.store.CreateEnrollmentToken(ctx, t); err != nil {
		return "", fleet.EnrollmentToken{}, fmt.Errorf("enroll: create token: %w", err)
	}
	s.log.Info("enrollment token created", "token_id", t.ID, "name", name, "uses", uses, "created_by", createdBy)
	return token, t, nil
}

// Enroll spends one use of req.Token and creates a new agent with a fresh
// credential, writing both and the enrollment's audit entry in one
// transaction (fleet.AgentStore.EnrollAgent): an enrollment whose audit
// entry cannot be written does not happen. It returns ErrInvalidRequest
// for a malformed request, fleet.ErrTokenInvalid for an unknown, expired
// or used-up token, and a wrapped store error otherwise (matching
// fleet.ErrStorageUnavailable when the store refuses writes).
func (s *Service) Enroll(ctx context.Context, req agentproto.EnrollRequest, remoteAddr string) (agentproto.EnrollResponse, error) {
	if err := validateEnroll(req); err != nil {
		return agentproto.EnrollResponse{}, err
	}
	now := s.opts.Now().UTC()
	id := secret.NewID("agt_")
	sec := secret.New()
	name := cmp.Or(req.Name, req.Hostname, id)
	tok, err := s.store.EnrollAgent(ctx, fleet.Enrollment{
		TokenHash: secret.Hash(req.Token), At: now, SecretHash: secret.Hash(sec),
		Agent: fleet.Agent{
			ID: id, Name: name, Hostname: req.Hostname, OS: req.OS, Arch: req.Arch,
			Version: req.Version, Labels: req.Labels,
			FirstSeen: now, LastSeen: now, LastAddr: remoteAddr,
		},
		Audit: func(tok fleet.EnrollmentToken) fleet.AuditEntry {
			return fleet.AuditEntry{
				Time: now, Actor: "enrollment-token:" + tok.ID, Role: AuditRole, Source: hostOf(remoteAddr),
				Action: "agent.enroll", Target: id, Result: strconv.Itoa(enrolledStatus), Detail: "token " + tok.Name,
			}
		},
	})
	if errors.Is(err, fleet.ErrTokenInvalid) {
		return agentproto.EnrollResponse{}, fleet.ErrTokenInvalid
	}
	if err != nil {
		return agentproto.EnrollResponse{}, fmt.Errorf("enroll: %w", err)
	}
	s.bus.Publish(events.AgentEnrolled{AgentID: id, Name: name, TokenID: tok.ID})
	s.log.Info("agent enrolled", "agent_id", id, "name", name, "token_id", tok.ID, "remote_addr", remoteAddr)
	return agentproto.EnrollResponse{AgentID: id, Credential: agentproto.FormatCredential(id, sec)}, nil
}

// Authenticate checks an agent credential and returns the agent. It
// returns fleet.ErrCredentialInvalid (malformed, unknown agent, wrong
// secret), fleet.ErrCredentialRevoked (right secret, revoked agent) or a
// wrapped store error. The
// secret comparison is constant-time, and an unknown agent costs the same
// hashing work as a wrong secret.
func (s *Service) Authenticate(ctx context.Context, credential string) (fleet.Agent, error) {
	id, sec, err := agentproto.ParseCredential(credential)
	if err != nil {
		return fleet.Agent{}, fmt.Errorf("%w: malformed credential", fleet.ErrCredentialInvalid)
	}
	hash, revoked, err := s.store.AgentSecretHash(ctx, id)
	switch {
	case errors.Is(err, fleet.ErrNotFound):
		secret.Matches(sec, s.dummyHash)
		return fleet.Agent{}, fleet.ErrCredentialInvalid
	case err != nil:
		return fleet.Agent{}, fmt.Errorf("enroll: authenticate: %w", err)
	}
	if !secret.Matches(sec, hash) {
		return fleet.Agent{}, fleet.ErrCredentialInvalid
	}
	if revoked {
		return fleet.Agent{}, fleet.ErrCredentialRevoked
	}
	a, err := s.store.Agent(ctx, id)
	if err != nil {
		return fleet.Agent{}, fmt.Errorf("enroll: authenticate: %w", err)
	}
	return a, nil
}

// Revoke marks the agent's credential revoked (fleet.ErrNotFound if there
// is no such agent) and publishes client.revoked. It does not touch open
// connections: the caller closes them with hub.Disconnect and
// agentproto.CloseRevoked.
func (s *Service) Revoke(ctx context.Context, agentID, by string) error {
	now := s.opts.Now().UTC()
	if err := s.store.RevokeAgent(ctx, agentID, now); err != nil {
		return fmt.Errorf("enroll: revoke %s: %w", agentID, err)
	}
	s.bus.Publish(events.AgentRevoked{AgentID: agentID, By: by})
	s.log.Info("agent revoked", "agent_id", agentID, "by", by)
	return nil
}

func validateEnroll(req agentproto.EnrollRequest) error {
	if req.Token == "" {
		return fmt.Errorf("%w: token is required", ErrInvalidRequest)
	}
	if !strings.HasPrefix(req.Token, TokenPrefix) || len(req.Token) > 256 {
		// Not one of ours: indistinguishable from an unknown token.
		return fleet.ErrTokenInvalid
	}
	if len(req.Name) > maxNameLen {
		return fmt.Errorf("%w: name longer than %d bytes", ErrInvalidRequest, maxNameLen)
	}
	for field, v := range map[string]string{"hostname": req.Hostname, "os": req.OS, "arch": req.Arch, "version": req.Version} {
		if len(v) > maxFieldLen {
			return fmt.Errorf("%w: %s longer than %d bytes", ErrInvalidRequest, field, maxFieldLen)
		}
	}
	if len(req.Labels) > maxLabels {
		return fmt.Errorf("%w: more than %d labels", ErrInvalidRequest, maxLabels)
	}
	for k, v := range req.Labels {
		if k == "" || len(k) > maxLabelKey || len(v) > maxFieldLen {
			return fmt.Errorf("%w: label keys are 1-%d bytes, label values at most %d", ErrInvalidRequest, maxLabelKey, maxFieldLen)
		}
	}
	return nil
}

// DefaultOptions returns the defaults of AttemptsPerMinute, BootstrapUses
// and BootstrapTTL. AttemptBurst and Now stay zero: their defaults follow
// AttemptsPerMinute and the clock.
func DefaultOptions() Options {
	d := Options{}.withDefaults()
	return Options{AttemptsPerMinute: d.AttemptsPerMinute, BootstrapUses: d.BootstrapUses, BootstrapTTL: d.BootstrapTTL}
}
