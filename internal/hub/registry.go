package hub

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
)

const shardCount = 64

// registry maps agent ids to their current connection. It is sharded so
// that 100k agents connecting, sending and sweeping do not contend on one
// lock. Entries are replaced and removed by pointer identity: a closing
// connection can only remove itself, never its successor.
type registry struct {
	seed   maphash.Seed
	online atomic.Int64 // registered connections that completed hello
	shards [shardCount]shard
}

type shard struct {
	mu sync.RWMutex
	m  map[string]*conn
	_  [40]byte // keep shards on separate cache lines
}

func newRegistry() *registry {
	r := &registry{seed: maphash.MakeSeed()}
	for i := range r.shards {
		r.shards[i].m = make(map[string]*conn)
	}
	return r
}

func (r *registry) shard(id string) *shard {
	return &r.shards[maphash.String(r.seed, id)%shardCount]
}

// put registers c for its agent and returns the connection it replaced,
// if any.
func (r *registry) put(c *conn) *conn {
	s := r.shard(c.agentID)
	s.mu.Lock()
	old := s.m[c.agentID]
	s.m[c.agentID] = c
	if old != nil && old.ready.Load() {
		r.online.Add(-1)
	}
	s.mu.Unlock()
	return old
}

// markReady marks c as having completed hello, if it is still the
// registered connection for its agent.
func (r *registry) markReady(c *conn) bool {
	s := r.shard(c.agentID)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m[c.agentID] != c {
		return false
	}
	c.ready.Store(true)
	r.online.Add(1)
	return true
}

// remove unregisters c if it is still the connection for its agent.
func (r *registry) remove(c *conn) bool {
	s := r.shard(c.agentID)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m[c.agentID] != c {
		return false
	}
	delete(s.m, c.agentID)
	if c.ready.Load() {
		r.online.Add(-1)
	}
	return true
}

// get returns the registered connection of an agent, or nil.
func (r *registry) get(id string) *conn {
	s := r.shard(id)
	s.mu.RLock()
	c := s.m[id]
	s.mu.RUnlock()
	return c
}

// collect appends to dst every registered connection for which match
// returns true (every one if match is nil). match runs under a shard read
// lock and must not call back into the registry; callers act on the
// result after the locks are released.
func (r *registry) collect(dst []*conn, match func(*conn) bool) []*conn {
	for i := range r.shards {
		s := &r.shards[i]
		s.mu.RLock()
		for _, c := range s.m {
			if match == nil || match(c) {
				dst = append(dst, c)
			}
		}
		s.mu.RUnlock()
	}
	return dst
}
