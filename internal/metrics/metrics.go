// Package metrics exposes the client manager's metrics in the Prometheus
// text exposition format. Counters are fed from the event bus and by
// middleware, or read from callbacks at scrape time (CounterFunc) like
// gauges.
package metrics

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"sync"

	"github.com/home-console/client-manager/internal/events"
)

// Registry holds the metrics. Its methods are safe for concurrent use.
type Registry struct {
	mu       sync.Mutex
	counters map[string]map[string]float64 // name -> label set -> value
	help     map[string]string
	gauges   []gauge
	funcs    []counterFunc
}

type counterFunc struct {
	name, labels string
	read         func() float64
}

type gauge struct {
	name, help string
	read       func() float64
}

// New returns an empty registry.
func New() *Registry {
	return &Registry{counters: make(map[string]map[string]float64), help: make(map[string]string)}
}

// Gauge registers a gauge read by fn at scrape time.
func (r *Registry) Gauge(name, help string, fn func() float64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.gauges = append(r.gauges, gauge{name: name, help: help, read: fn})
}

// CounterFunc registers a counter (one label set of it, from the label
// pairs "key", "value", ...) whose value fn reads at scrape time; fn must
// never decrease. Other label sets of the same name may come from further
// CounterFunc calls or from Add.
func (r *Registry) CounterFunc(name, help string, fn func() float64, labels ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.funcs = append(r.funcs, counterFunc{name: name, labels: labelSet(labels), read: fn})
	if _, ok := r.help[name]; !ok {
		r.help[name] = help
	}
}

// Add adds v to the counter name with the given label pairs
// ("key", "value", ...).
func (r *Registry) Add(name, help string, v float64, labels ...string) {
	key := labelSet(labels)
	r.mu.Lock()
	defer r.mu.Unlock()
	m, ok := r.counters[name]
	if !ok {
		m = make(map[string]float64)
		r.counters[name] = m
	}
	if _, ok := r.help[name]; !ok {
		r.help[name] = help
	}
	m[key] += v
}

// Follow counts bus events until ctx ends: events by type, and finished
// commands by status.
func (r *Registry) Follow(ctx context.Context, bus *events.Bus) {
	sub := bus.Subscribe(4096)
	defer sub.Close()
	for {
		select {
		case <-ctx.Done():
			return
		case e := <-sub.C:
			r.Add("cm_events_total", "Events published, by type.", 1, "type", string(e.Type()))
			if f, ok := e.Payload.(events.CommandFinished); ok {
				r.Add("cm_commands_finished_total", "Commands that reached a terminal state, by status.", 1, "status", string(f.Status))
			}
		}
	}
}

// ServeHTTP writes every metric in the Prometheus text format.
func (r *Registry) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	r.write(w)
}

func (r *Registry) write(w io.Writer) {
	r.mu.Lock()
	gauges := append([]gauge(nil), r.gauges...)
	counters := r.snapshotLocked()
	help := make(map[string]string, len(counters))
	for n := range counters {
		help[n] = r.help[n]
	}
	r.mu.Unlock()
	names := make([]string, 0, len(counters))
	for n := range counters {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s counter\n", n, help[n], n)
		keys := make([]string, 0, len(counters[n]))
		for k := range counters[n] {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(w, "%s%s %s\n", n, k, strconv.FormatFloat(counters[n][k], 'g', -1, 64))
		}
	}
	for _, g := range gauges {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s gauge\n%s %s\n", g.name, g.help, g.name, g.name,
			strconv.FormatFloat(g.read(), 'g', -1, 64))
	}
}

// snapshotLocked returns every counter's value by name and label set,
// the CounterFunc ones read now.
func (r *Registry) snapshotLocked() map[string]map[string]float64 {
	out := make(map[string]map[string]float64, len(r.counters)+len(r.funcs))
	for n, m := range r.counters {
		out[n] = make(map[string]float64, len(m))
		for k, v := range m {
			out[n][k] = v
		}
	}
	for _, f := range r.funcs {
		if out[f.name] == nil {
			out[f.name] = make(map[string]float64)
		}
		out[f.name][f.labels] += f.read()
	}
	return out
}

func labelSet(pairs []string) string {
	if len(pairs) == 0 {
		return ""
	}
	s := "{"
	for i := 0; i+1 < len(pairs); i += 2 {
		if i > 0 {
			s += ","
		}
		s += pairs[i] + "=" + strconv.Quote(pairs[i+1])
	}
	return s + "}"
}
