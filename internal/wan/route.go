package wan

import (
	"fmt"
	"slices"
)

// Flow is traffic that a client on From opens to a server on To, which
// listens on Addr (host:port on loopback).
type Flow struct {
	From, To string
	Addr     string
}

// Name is the flow's name in errors and reports: "from->to".
func (f Flow) Name() string { return f.From + "->" + f.To }

// Plan routes every flow over the declared links: the direct link when
// there is one, else the shortest chain of links (fewest hops, the first
// declared on a tie), so cloud->edge traffic can cross cloud->fog, then
// fog->edge. It returns the targets for Start and, per flow, its route as
// link names (nil when no chain of links joins the two ends: that flow is
// not emulated). A proxy forwards to one place, so two flows that would
// leave one link towards different places are an error naming both.
func (s *Spec) Plan(flows []Flow) (targets map[string]string, routes [][]string, err error) {
	targets = map[string]string{}
	by := map[string]string{} // link name → the flow that set its target
	routes = make([][]string, len(flows))
	for i, f := range flows {
		route := s.route(f.From, f.To)
		routes[i] = route
		for j, l := range route {
			next := f.Addr
			if j+1 < len(route) {
				next = route[j+1]
			}
			if t, ok := targets[l]; ok && t != next {
				return nil, nil, fmt.Errorf("network: link %s would carry flow %s to %s and flow %s to %s; a proxy forwards to one place: declare a direct link for one of them",
					l, by[l], t, f.Name(), next)
			}
			targets[l], by[l] = next, f.Name()
		}
	}
	return targets, routes, nil
}

// route is the shortest chain of declared links from one end to the
// other, breadth first in file order; nil when there is none.
func (s *Spec) route(from, to string) []string {
	prev := map[string]int{from: -1} // node → index of the link that reached it
	queue := []string{from}
	for len(queue) > 0 && !hasKey(prev, to) {
		at := queue[0]
		queue = queue[1:]
		for i, l := range s.Links {
			if l.From == at && !hasKey(prev, l.To) {
				prev[l.To] = i
				queue = append(queue, l.To)
			}
		}
	}
	if !hasKey(prev, to) || from == to {
		return nil
	}
	var route []string
	for at := to; prev[at] >= 0; at = s.Links[prev[at]].From {
		route = append(route, s.Links[prev[at]].Name())
	}
	slices.Reverse(route)
	return route
}

func hasKey(m map[string]int, k string) bool {
	_, ok := m[k]
	return ok
}
