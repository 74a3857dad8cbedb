package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"maps"
	"strings"
	"time"

	"github.com/home-console/client-manager/internal/fleet"
)

// agentColumns are the columns scanAgent reads.
const agentColumns = `id, name, hostname, os, arch, version, labels, allowed,
	first_seen, last_seen, last_addr, revoked, revoked_at`

// scanAgent reads one row of agentColumns.
func scanAgent(sc scanner) (fleet.Agent, error) {
	var a fleet.Agent
	err := sc.Scan(&a.ID, &a.Name, &a.Hostname, &a.OS, &a.Arch, &a.Version,
		jsonDest{&a.Labels}, jsonDest{&a.Allowed},
		timeDest{&a.FirstSeen}, timeDest{&a.LastSeen}, &a.LastAddr,
		&a.Revoked, timeDest{&a.RevokedAt})
	return a, err
}

// searchText is the agents.search value: what AgentFilter.Text matches,
// lower-cased.
func searchText(id, name, hostname string) string {
	return strings.ToLower(id + "\n" + name + "\n" + hostname)
}

// encodeFacts returns labels and allowed as JSON text.
func encodeFacts(labels map[string]string, allowed []string) (string, string, error) {
	l, err := encodeJSON(labels, "{}")
	if err != nil {
		return "", "", err
	}
	a, err := encodeJSON(allowed, "[]")
	return l, a, err
}

// CreateAgent stores a new agent with the hash of its secret; a.Labels
// are its enrollment labels, which every later TouchAgent keeps. An agent
// with the same id already stored is fleet.ErrConflict.
func (s *Store) CreateAgent(ctx context.Context, a fleet.Agent, secretHash []byte) error {
	err := s.update(ctx, func(tx *sql.Tx) error { return insertAgent(ctx, tx, a, secretHash) })
	if err != nil {
		return fmt.Errorf("sqlite: create agent %s: %w", a.ID, conflict(err))
	}
	return nil
}

// insertAgent inserts a new agent in tx.
func insertAgent(ctx context.Context, tx *sql.Tx, a fleet.Agent, secretHash []byte) error {
	labels, allowed, err := encodeFacts(a.Labels, a.Allowed)
	if err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO agents (id, name, hostname, os, arch, version,
		labels, enrollment_labels, allowed, first_seen, last_seen, last_addr, secret_hash, revoked, revoked_at, search)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		a.ID, a.Name, a.Hostname, a.OS, a.Arch, a.Version, labels, labels, allowed,
		encodeTime(a.FirstSeen), encodeTime(a.LastSeen), a.LastAddr, secretHash,
		a.Revoked, encodeTime(a.RevokedAt), searchText(a.ID, a.Name, a.Hostname))
	return err
}

// EnrollAgent writes e in one transaction: it spends one use of the token
// whose hash is e.TokenHash, stores e.Agent with e.SecretHash (as
// CreateAgent) and appends the audit entry e.Audit returns for the token.
// It returns the token as it is after, fleet.ErrTokenInvalid (token
// unknown, used up or expired at e.At) or fleet.ErrConflict (agent id
// taken); on any error nothing is written.
func (s *Store) EnrollAgent(ctx context.Context, e fleet.Enrollment) (fleet.EnrollmentToken, error) {
	var tok fleet.EnrollmentToken
	err := s.update(ctx, func(tx *sql.Tx) error {
		var err error
		if tok, err = useToken(ctx, tx, e.TokenHash, e.At); err != nil {
			return err
		}
		if err := insertAgent(ctx, tx, e.Agent, e.SecretHash); err != nil {
			return conflict(err)
		}
		_, err = insertAudit(ctx, tx, e.Audit(tok))
		return err
	})
	if err != nil {
		return fleet.EnrollmentToken{}, fmt.Errorf("sqlite: enroll agent %s: %w", e.Agent.ID, err)
	}
	return tok, nil
}

// Agent returns one agent, revoked or not, or fleet.ErrNotFound.
func (s *Store) Agent(ctx context.Context, id string) (fleet.Agent, error) {
	row := s.reader.QueryRowContext(ctx, `SELECT `+agentColumns+` FROM agents WHERE id = ?`, id)
	a, err := scanAgent(row)
	if err != nil {
		return fleet.Agent{}, fmt.Errorf("sqlite: agent %s: %w", id, notFound(err))
	}
	return a, nil
}

// AgentSecretHash returns the stored hash of the agent's secret and whether
// the agent is revoked, or fleet.ErrNotFound.
func (s *Store) AgentSecretHash(ctx context.Context, id string) ([]byte, bool, error) {
	var hash []byte
	var revoked bool
	err := s.reader.QueryRowContext(ctx, `SELECT secret_hash, revoked FROM agents WHERE id = ?`, id).Scan(&hash, &revoked)
	if err != nil {
		return nil, false, fmt.Errorf("sqlite: agent secret hash %s: %w", id, notFound(err))
	}
	return hash, revoked, nil
}

// TouchAgent records a connection: it replaces the agent's facts, sets
// its address and last-seen time, and sets its labels to facts.Labels
// with the enrollment labels over them (an enrollment label is never
// removed or changed by a hello). An unknown id is fleet.ErrNotFound.
func (s *Store) TouchAgent(ctx context.Context, id string, facts fleet.AgentFacts, addr string, at time.Time) error {
	err := s.update(ctx, func(tx *sql.Tx) error {
		var name string
		var enrolled map[string]string
		err := tx.QueryRowContext(ctx, `SELECT name, enrollment_labels FROM agents WHERE id = ?`, id).
			Scan(&name, jsonDest{&enrolled})
		if err != nil {
			return notFound(err)
		}
		merged := maps.Clone(facts.Labels)
		if merged == nil {
			merged = make(map[string]string, len(enrolled))
		}
		maps.Copy(merged, enrolled)
		labels, allowed, err := encodeFacts(merged, facts.Allowed)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE agents SET hostname = ?, os = ?, arch = ?, version = ?,
			labels = ?, allowed = ?, last_addr = ?, last_seen = ?, search = ? WHERE id = ?`,
			facts.Hostname, facts.OS, facts.Arch, facts.Version, labels, allowed,
			addr, encodeTime(at), searchText(id, name, facts.Hostname), id)
		return err
	})
	if err != nil {
		return fmt.Errorf("sqlite: touch agent %s: %w", id, err)
	}
	return nil
}

// SeenAgent sets the agent's last-seen time, or returns fleet.ErrNotFound.
func (s *Store) SeenAgent(ctx context.Context, id string, at time.Time) error {
	res, err := s.exec(ctx, `UPDATE agents SET last_seen = ? WHERE id = ?`, encodeTime(at), id)
	if err == nil {
		err = affected(res)
	}
	if err != nil {
		return fmt.Errorf("sqlite: seen agent %s: %w", id, err)
	}
	return nil
}

// SeenAgents sets the last-seen time of many agents in one transaction.
// Unknown ids and zero times are ignored, and a time older than the
// stored one leaves it unchanged.
func (s *Store) SeenAgents(ctx context.Context, at map[string]time.Time) error {
	if len(at) == 0 {
		return nil
	}
	err := s.update(ctx, func(tx *sql.Tx) error {
		stmt, err := tx.PrepareContext(ctx, `UPDATE agents SET last_seen = max(coalesce(last_seen, 0), ?) WHERE id = ?`)
		if err != nil {
			return err
		}
		defer stmt.Close()
		for id, t := range at {
			if t.IsZero() {
				continue
			}
			if _, err := stmt.ExecContext(ctx, encodeTime(t), id); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("sqlite: seen %d agents: %w", len(at), err)
	}
	return nil
}

// ListAgents returns the page of agents selected by f, ordered by first
// seen time then id, and the number of agents matching f. The page size is
// f.Limit, 100 if unset, at most 1000.
func (s *Store) ListAgents(ctx context.Context, f fleet.AgentFilter) ([]fleet.Agent, int, error) {
	q := pageQuery{columns: agentColumns, from: "agents", orderBy: "first_seen, id", limit: f.Limit, offset: f.Offset}
	if !f.IncludeRevoked {
		q.where.add("revoked = 0")
	}
	if len(f.IDs) > 0 {
		ids, err := json.Marshal(f.IDs)
		if err != nil {
			return nil, 0, fmt.Errorf("sqlite: list agents: %w", err)
		}
		q.where.add("id IN (SELECT value FROM json_each(?))", string(ids))
	}
	if len(f.Labels) > 0 {
		selector, err := json.Marshal(f.Labels)
		if err != nil {
			return nil, 0, fmt.Errorf("sqlite: list agents: %w", err)
		}
		// One indexed lookup per selector entry in agent_labels, however
		// many entries: an agent matches if it has every one.
		q.where.add(`id IN (SELECT agent_id FROM agent_labels
			WHERE (key, value) IN (SELECT key, value FROM json_each(?))
			GROUP BY agent_id HAVING count(*) = ?)`, string(selector), len(f.Labels))
	}
	if f.Text != "" {
		q.where.add("instr(search, ?) > 0", strings.ToLower(f.Text))
	}
	agents, total, err := list(ctx, s, q, scanAgent)
	if err != nil {
		return nil, 0, fmt.Errorf("sqlite: list agents: %w", err)
	}
	return agents, total, nil
}

// RevokeAgent marks the agent revoked, or returns fleet.ErrNotFound.
// Revoking a revoked agent keeps the first revocation time.
func (s *Store) RevokeAgent(ctx context.Context, id string, at time.Time) error {
	res, err := s.exec(ctx, `UPDATE agents SET revoked = 1, revoked_at = coalesce(revoked_at, ?)
		WHERE id = ?`, encodeTime(at), id)
	if err == nil {
		err = affected(res)
	}
	if err != nil {
		return fmt.Errorf("sqlite: revoke agent %s: %w", id, err)
	}
	return nil
}
