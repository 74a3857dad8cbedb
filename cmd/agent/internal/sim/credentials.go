package sim

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/home-console/client-manager/pkg/agent"
	"github.com/home-console/client-manager/pkg/agentproto"
)

// enrollWorkers is how many enrollments run at once.
const enrollWorkers = 8

// Credential is one line of the credentials file (JSON Lines).
type Credential struct {
	Name string `json:"name"`
	agent.StoredCredential
}

// LoadCredentials reads a credentials file; a missing file is empty.
func LoadCredentials(path string) ([]Credential, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var creds []Credential
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		if len(sc.Bytes()) == 0 {
			continue
		}
		var c Credential
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, line, err)
		}
		if _, _, err := agentproto.ParseCredential(c.Credential); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, line, err)
		}
		creds = append(creds, c)
	}
	return creds, sc.Err()
}

// enrollMissing enrolls agents until count credentials exist, appending
// each new one to path (mode 0600) as soon as it is issued, so an
// interrupted run keeps what it got. It returns all credentials.
func enrollMissing(ctx context.Context, cfg Config, have []Credential) ([]Credential, error) {
	need := cfg.Count - len(have)
	if need <= 0 {
		return have, nil
	}
	if cfg.EnrollToken == "" {
		return have, fmt.Errorf("%d credentials in %s, %d needed: an enrollment token is required", len(have), cfg.CredentialsFile, cfg.Count)
	}
	f, err := os.OpenFile(cfg.CredentialsFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return have, err
	}
	defer f.Close()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var mu sync.Mutex
	first := len(have)
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(enrollWorkers, need) {
		wg.Go(func() {
			for i := range next {
				c, err := enrollOne(ctx, cfg, fmt.Sprintf("sim-%05d", i))
				mu.Lock()
				if err == nil {
					err = appendCredential(f, c)
					have = append(have, c)
				}
				mu.Unlock()
				if err != nil {
					cancel(err)
				}
			}
		})
	}
	for i := first; i < cfg.Count && ctx.Err() == nil; i++ {
		select {
		case next <- i:
		case <-ctx.Done():
		}
	}
	close(next)
	wg.Wait()
	return have, context.Cause(ctx)
}

// enrollOne enrolls one agent, waiting out 429 answers.
func enrollOne(ctx context.Context, cfg Config, name string) (Credential, error) {
	req := agentproto.EnrollRequest{Token: cfg.EnrollToken, Name: name, Hostname: name,
		Version: "sim", Labels: map[string]string{"simulated": "true"}}
	for {
		resp, err := agent.Enroll(ctx, cfg.Server, req, cfg.HTTPClient)
		var se *agent.ServerError
		if errors.As(err, &se) && se.StatusCode == http.StatusTooManyRequests {
			t := time.NewTimer(max(se.RetryAfter, time.Second))
			select {
			case <-ctx.Done():
				t.Stop()
				return Credential{}, context.Cause(ctx)
			case <-t.C:
				continue
			}
		}
		if err != nil {
			return Credential{}, fmt.Errorf("enroll %s: %w", name, err)
		}
		return Credential{Name: name, StoredCredential: agent.StoredCredential{
			Server: cfg.Server, AgentID: resp.AgentID, Credential: resp.Credential}}, nil
	}
}

func appendCredential(f *os.File, c Credential) error {
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	_, err = f.Write(append(b, '\n'))
	return err
}
