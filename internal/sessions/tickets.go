package sessions

import (
	"sync"
	"time"

	"github.com/home-console/client-manager/internal/access"
	"github.com/home-console/client-manager/internal/fleet"
	"github.com/home-console/client-manager/internal/secret"
)

// maxTickets bounds the tickets held at once; beyond, the oldest goes.
const maxTickets = 10000

// ticket is one issued ticket, stored under its hash.
type ticket struct {
	principal access.Principal
	agentID   string
	expires   time.Time
}

// tickets holds the unredeemed tickets by the hex of their hash: the
// ticket itself is never stored.
type tickets struct {
	ttl   time.Duration
	mu    sync.Mutex
	byKey map[string]ticket
	order []string // keys, oldest first
}

// IssueTicket returns a new ticket that authenticates p once, for agentID,
// within the ticket TTL, and when it expires.
func (m *Manager) IssueTicket(p access.Principal, agentID string) (string, time.Time) {
	t := &m.tickets
	now := time.Now()
	tk := secret.New()
	key := string(secret.Hash(tk))
	exp := now.Add(t.ttl)
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.byKey == nil {
		t.byKey = map[string]ticket{}
	}
	t.expire(now)
	t.byKey[key] = ticket{principal: p, agentID: agentID, expires: exp}
	t.order = append(t.order, key)
	return tk, exp
}

// expire drops expired tickets, and the oldest beyond maxTickets.
func (t *tickets) expire(now time.Time) {
	for len(t.order) > 0 {
		k := t.order[0]
		tk, ok := t.byKey[k]
		if ok && now.Before(tk.expires) && len(t.byKey) < maxTickets {
			return
		}
		delete(t.byKey, k)
		t.order = t.order[1:]
	}
}

// RedeemTicket returns the principal a ticket was issued to, if it is
// valid for agentID; the ticket is used up either way. A ticket unknown,
// used, expired or issued for another agent is fleet.CodeTicketInvalid.
func (m *Manager) RedeemTicket(tk, agentID string) (access.Principal, error) {
	t := &m.tickets
	key := string(secret.Hash(tk))
	t.mu.Lock()
	got, ok := t.byKey[key]
	delete(t.byKey, key)
	t.mu.Unlock()
	if !ok || !time.Now().Before(got.expires) || got.agentID != agentID {
		return access.Principal{}, fleet.Errorf(fleet.CodeTicketInvalid, "ticket unknown, already used, expired or issued for another agent")
	}
	return got.principal, nil
}
