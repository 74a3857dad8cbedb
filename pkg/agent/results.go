package agent

import (
	"container/list"
	"time"

	"github.com/home-console/client-manager/pkg/agentproto"
)

// Bounds of the finished-command memory.
const (
	// rememberedResults is how many finished command ids the agent
	// remembers for de-duplication.
	rememberedResults = 1024
	// rememberedOutputBytes bounds the output held by remembered results;
	// beyond it the oldest results lose their output (not their id).
	rememberedOutputBytes = 64 << 20
)

// outputDroppedNote is appended to the error of a result whose output the
// agent no longer holds when it has to send it again.
const outputDroppedNote = "output no longer held by the agent"

// resultCache remembers the results of finished commands, oldest first, with
// whether the server acknowledged each. It is bounded in entries and output
// bytes. It is not safe for concurrent use.
type resultCache struct {
	order       *list.List // of *cachedResult, oldest first
	byID        map[string]*list.Element
	outputBytes int
}

type cachedResult struct {
	res    agentproto.CommandResult
	acked  bool
	sentAt time.Time // last time it was handed to a connection
}

func (c *resultCache) init() {
	if c.byID == nil {
		c.order = list.New()
		c.byID = make(map[string]*list.Element)
	}
}

// get returns the remembered result of id.
func (c *resultCache) get(id string) (agentproto.CommandResult, bool) {
	e, ok := c.byID[id]
	if !ok {
		return agentproto.CommandResult{}, false
	}
	return e.Value.(*cachedResult).res, true
}

// add remembers a new, unacknowledged result, about to be sent at now. It
// returns the id of an unacknowledged result it had to forget to stay
// within bounds, if any.
func (c *resultCache) add(res agentproto.CommandResult, now time.Time) (dropped string) {
	c.init()
	if e, ok := c.byID[res.CommandID]; ok {
		c.remove(e)
	}
	c.byID[res.CommandID] = c.order.PushBack(&cachedResult{res: res, sentAt: now})
	c.outputBytes += len(res.Stdout) + len(res.Stderr)
	if c.order.Len() > rememberedResults {
		dropped = c.evictOne()
	}
	for e := c.order.Front(); e != nil && c.outputBytes > rememberedOutputBytes; e = e.Next() {
		c.dropOutput(e.Value.(*cachedResult))
	}
	return dropped
}

// evictOne forgets the oldest acknowledged result, or the oldest result if
// none is acknowledged; it returns the latter's id.
func (c *resultCache) evictOne() string {
	for e := c.order.Front(); e != nil; e = e.Next() {
		if e.Value.(*cachedResult).acked {
			c.remove(e)
			return ""
		}
	}
	e := c.order.Front()
	c.remove(e)
	return e.Value.(*cachedResult).res.CommandID
}

func (c *resultCache) remove(e *list.Element) {
	r := c.order.Remove(e).(*cachedResult)
	delete(c.byID, r.res.CommandID)
	c.outputBytes -= len(r.res.Stdout) + len(r.res.Stderr)
}

func (c *resultCache) dropOutput(r *cachedResult) {
	if r.res.Stdout == "" && r.res.Stderr == "" {
		return
	}
	c.outputBytes -= len(r.res.Stdout) + len(r.res.Stderr)
	r.res.Stdout, r.res.Stderr, r.res.Truncated = "", "", true
	if r.res.Error == "" {
		r.res.Error = outputDroppedNote
	} else {
		r.res.Error += "; " + outputDroppedNote
	}
}

// ack marks id acknowledged; it reports whether id was known.
func (c *resultCache) ack(id string) bool {
	e, ok := c.byID[id]
	if ok {
		e.Value.(*cachedResult).acked = true
	}
	return ok
}

// takeUnacked returns the unacknowledged results last sent at or before
// sentBefore, oldest first, and records them as sent at now.
func (c *resultCache) takeUnacked(sentBefore, now time.Time) []agentproto.CommandResult {
	if c.order == nil {
		return nil
	}
	var out []agentproto.CommandResult
	for e := c.order.Front(); e != nil; e = e.Next() {
		if r := e.Value.(*cachedResult); !r.acked && !r.sentAt.After(sentBefore) {
			r.sentAt = now
			out = append(out, r.res)
		}
	}
	return out
}
