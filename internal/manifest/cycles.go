package manifest

import (
	"slices"
	"strings"
)

// checkCycles marks every plugin on a dependency cycle invalid, with the
// cycle as seen from that plugin ("dependency cycle: a -> b -> a").
// Self-dependencies are already rejected by [Load].
func (s *Set) checkCycles() {
	graph := make(map[string][]string)
	for _, e := range s.Entries {
		if !e.Runnable() {
			continue
		}
		var deps []string
		for _, d := range e.Manifest.Dependencies {
			if dep := s.named(d); dep != nil && dep.Runnable() {
				deps = append(deps, d)
			}
		}
		graph[e.Name] = deps
	}
	for _, comp := range components(graph) {
		if len(comp) < 2 {
			continue
		}
		for _, n := range comp {
			e, _ := s.Lookup(n)
			e.Status = StatusInvalid
			e.Reason = "dependency cycle: " + strings.Join(cyclePath(graph, comp, n), " -> ")
		}
	}
}

// components returns the strongly connected components of graph
// (Tarjan's algorithm), visiting nodes in name order.
func components(graph map[string][]string) [][]string {
	t := tarjan{graph: graph, index: map[string]int{}, low: map[string]int{}, on: map[string]bool{}}
	nodes := make([]string, 0, len(graph))
	for n := range graph {
		nodes = append(nodes, n)
	}
	slices.Sort(nodes)
	for _, n := range nodes {
		if _, seen := t.index[n]; !seen {
			t.visit(n)
		}
	}
	return t.out
}

type tarjan struct {
	graph      map[string][]string
	index, low map[string]int
	on         map[string]bool
	stack      []string
	next       int
	out        [][]string
}

func (t *tarjan) visit(n string) {
	t.index[n], t.low[n] = t.next, t.next
	t.next++
	t.stack = append(t.stack, n)
	t.on[n] = true
	for _, d := range t.graph[n] {
		if _, seen := t.index[d]; !seen {
			t.visit(d)
			t.low[n] = min(t.low[n], t.low[d])
		} else if t.on[d] {
			t.low[n] = min(t.low[n], t.index[d])
		}
	}
	if t.low[n] != t.index[n] {
		return
	}
	var comp []string
	for {
		top := t.stack[len(t.stack)-1]
		t.stack = t.stack[:len(t.stack)-1]
		t.on[top] = false
		comp = append(comp, top)
		if top == n {
			break
		}
	}
	slices.Sort(comp)
	t.out = append(t.out, comp)
}

// cyclePath returns the shortest path from start back to start through
// the nodes of comp, start included at both ends.
func cyclePath(graph map[string][]string, comp []string, start string) []string {
	prev := map[string]string{}
	queue := []string{start}
	for len(queue) > 0 {
		n := queue[0]
		queue = queue[1:]
		for _, d := range graph[n] {
			if !slices.Contains(comp, d) {
				continue
			}
			if d == start {
				path := []string{start}
				for at := n; at != start; at = prev[at] {
					path = append(path, at)
				}
				path = append(path, start)
				slices.Reverse(path)
				return path
			}
			if _, seen := prev[d]; !seen {
				prev[d] = n
				queue = append(queue, d)
			}
		}
	}
	return []string{start, start}
}
