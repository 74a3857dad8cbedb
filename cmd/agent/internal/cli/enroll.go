package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/home-console/client-manager/pkg/agent"
	"github.com/home-console/client-manager/pkg/agentproto"
)

// loadOrEnroll returns the stored credential, or enrolls with the
// configured token and stores the new one.
func loadOrEnroll(ctx context.Context, o agentOptions, facts agentproto.Hello, client *http.Client, log *slog.Logger) (agent.StoredCredential, error) {
	cred, err := agent.LoadCredential(o.credFile)
	if err == nil {
		if cred.Server != "" && cred.Server != o.server {
			log.Warn("the stored credential was issued by another server URL", "issued_by", cred.Server, "server", o.server)
		}
		return cred, nil
	}
	if !errors.Is(err, agent.ErrNoCredential) {
		return cred, err
	}
	if o.token == "" {
		return cred, fmt.Errorf("no credential at %s and no enrollment token: pass --enroll-token (or AGENT_ENROLL_TOKEN)", o.credFile)
	}
	token, err := readToken(o.token)
	if err != nil {
		return cred, err
	}
	name := o.name
	if name == "" {
		name = facts.Hostname
	}
	req := agentproto.EnrollRequest{Token: token, Name: name, Hostname: facts.Hostname, OS: facts.OS,
		Arch: facts.Arch, Version: facts.Version, Labels: facts.Labels}
	resp, err := enrollRetrying(ctx, o.server, req, client, log)
	if err != nil {
		return cred, err
	}
	cred = agent.StoredCredential{Server: o.server, AgentID: resp.AgentID, Credential: resp.Credential}
	if err := agent.SaveCredential(o.credFile, cred); err != nil {
		return cred, fmt.Errorf("enrolled as %s but could not store the credential: %w", resp.AgentID, err)
	}
	log.Info("enrolled", "agent_id", resp.AgentID, "credential_file", o.credFile)
	return cred, nil
}

// enrollRetrying enrolls, retrying while the failure may be temporary (no
// answer, 429, 5xx): after the server's Retry-After if given, else after a
// delay doubling from 1s to 30s. It gives up at once on other answers.
func enrollRetrying(ctx context.Context, server string, req agentproto.EnrollRequest, client *http.Client, log *slog.Logger) (agentproto.EnrollResponse, error) {
	delay := time.Second
	for {
		resp, err := agent.Enroll(ctx, server, req, client)
		var se *agent.ServerError
		isServerErr := errors.As(err, &se)
		if err == nil || ctx.Err() != nil ||
			isServerErr && se.StatusCode < 500 && se.StatusCode != http.StatusTooManyRequests {
			return resp, err
		}
		wait := delay
		if isServerErr && se.RetryAfter > 0 {
			wait = se.RetryAfter
		}
		delay = min(2*delay, 30*time.Second)
		log.Warn("enrollment failed; retrying", "err", err, "retry_in", wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return resp, ctx.Err()
		case <-t.C:
		}
	}
}
