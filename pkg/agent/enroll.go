package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/home-console/client-manager/pkg/agentproto"
)

// enrollTimeout bounds an enrollment made with the default HTTP client.
const enrollTimeout = 30 * time.Second

// Enroll exchanges an enrollment token (req.Token) for the agent's permanent
// identity: POST serverURL + agentproto.PathEnroll. serverURL is the
// client manager's base URL as in [Config.ServerURL]. A nil httpClient
// means one with a 30s timeout. Enroll blocks until the server answers or
// ctx is done.
//
// If the server refuses, the error is a [*ServerError] with its status, code
// and message: 400 for a malformed request, 401 for a bad, used or expired
// token (errors.Is(err, ErrUnauthorized) holds), 429 when enrolling too
// fast (see RetryAfter). The credential in the response is shown only once:
// store it, e.g. with [SaveCredential].
func Enroll(ctx context.Context, serverURL string, req agentproto.EnrollRequest, httpClient *http.Client) (agentproto.EnrollResponse, error) {
	var out agentproto.EnrollResponse
	u, err := endpointURL(serverURL, agentproto.PathEnroll)
	if err != nil {
		return out, fmt.Errorf("enroll: %w", err)
	}
	if httpClient == nil {
		httpClient = &http.Client{Timeout: enrollTimeout}
	}
	body, err := json.Marshal(req)
	if err != nil {
		return out, fmt.Errorf("enroll: %w", err)
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return out, fmt.Errorf("enroll: %w", err)
	}
	hreq.Header.Set("Content-Type", "application/json")
	hreq.Header.Set("Accept", "application/json")
	resp, err := httpClient.Do(hreq)
	if err != nil {
		return out, fmt.Errorf("enroll: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		return out, fmt.Errorf("enroll: %w", serverErrorFrom(resp))
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&out); err != nil {
		return out, fmt.Errorf("enroll: invalid response: %w", err)
	}
	if _, _, err := agentproto.ParseCredential(out.Credential); err != nil || out.AgentID == "" {
		return agentproto.EnrollResponse{}, fmt.Errorf("enroll: invalid response: no agent id or %w", agentproto.ErrMalformedCredential)
	}
	return out, nil
}
