package bench

import (
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/ddnn-continuum/ddnn/internal/wan"
)

// Devices is the name of the devices' end of a link in a network file.
const Devices = "devices"

// Network is the emulated WAN a run crosses (ddnn bench --network).
type Network struct {
	// Net is the started network: the bench runs its cuts from the first
	// send and reads its byte counters at the end.
	Net  *wan.Network
	Spec *wan.Spec
	// Flows are the traffic the run sends over it, with Routes[i] the
	// links flow i crosses (nil: not emulated). A flow from Devices
	// carries the devices' messages; the others are the pipeline's
	// uplinks, whose messages the sites' /metrics count.
	Flows  []wan.Flow
	Routes [][]string
	// Metrics are the admin /metrics URLs of the sites that run.
	Metrics []string
}

// LinkSummary is what crossed one emulated link during a run.
type LinkSummary struct {
	From string `json:"from"`
	To   string `json:"to"`
	// Bytes is both directions: BytesUp from → to (requests) and
	// BytesDown back (answers), payload of the TCP streams.
	Bytes     int64 `json:"bytes"`
	BytesUp   int64 `json:"bytes_up"`
	BytesDown int64 `json:"bytes_down"`
	// Messages are the records the flows over this link carried: the
	// devices' accepted messages (and the bench's probe), or what the
	// uplinks delivered (ddnn_link_messages_total).
	Messages int64 `json:"messages"`
	// Carries names the flows routed over the link ("cloud->edge").
	Carries []string `json:"carries"`
	// WAN is true for a link between two sites (not from the devices).
	WAN bool `json:"wan"`
}

// CutSummary compares, per exit tier, the round trips of messages sent
// during an outage with those sent before it.
type CutSummary struct {
	// Links are the links down together from AtS for ForS seconds.
	Links  []string               `json:"links"`
	AtS    float64                `json:"at_s"`
	ForS   float64                `json:"for_s"`
	Before map[string]Percentiles `json:"before"`
	During map[string]Percentiles `json:"during"`
}

// linkSummaries reads the network's counters and the uplinks' message
// counts; devices is how many messages the devices got accepted.
//
// A result reaches the bench before its uplink hears the remote funnel's
// answer, which crosses the links back: the counters are read until they
// hold still for settle, at most 10 s.
func (n *Network) linkSummaries(devices int64, settle time.Duration) []LinkSummary {
	perFlow, stats := n.flowMessages(), n.Net.Stats()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		time.Sleep(settle)
		pf, st := n.flowMessages(), n.Net.Stats()
		if maps.Equal(pf, perFlow) && slices.Equal(st, stats) {
			break
		}
		perFlow, stats = pf, st
	}
	var out []LinkSummary
	for _, st := range stats {
		l := LinkSummary{
			From: st.From, To: st.To, BytesUp: st.BytesUp, BytesDown: st.BytesDown,
			Bytes: st.BytesUp + st.BytesDown, WAN: st.From != Devices && st.To != Devices, Carries: []string{},
		}
		name := st.From + "->" + st.To
		for i, f := range n.Flows {
			if !slices.Contains(n.Routes[i], name) {
				continue
			}
			l.Carries = append(l.Carries, f.Name())
			if f.From == Devices {
				l.Messages += devices
			} else {
				l.Messages += perFlow[f.Name()]
			}
		}
		out = append(out, l)
	}
	return out
}

// flowMessages sums ddnn_link_messages_total per "from->to" over the
// sites' /metrics; a site that does not answer counts nothing.
func (n *Network) flowMessages() map[string]int64 {
	m := map[string]int64{}
	client := &http.Client{Timeout: 2 * time.Second}
	for _, url := range n.Metrics {
		resp, err := client.Get(url)
		if err != nil {
			continue
		}
		parser := expfmt.NewTextParser(model.UTF8Validation)
		fams, err := parser.TextToMetricFamilies(resp.Body)
		resp.Body.Close()
		if err != nil {
			continue
		}
		f, ok := fams["ddnn_link_messages_total"]
		if !ok {
			continue
		}
		for _, s := range f.Metric {
			var from, to string
			for _, l := range s.Label {
				switch l.GetName() {
				case "from":
					from = l.GetValue()
				case "to":
					to = l.GetValue()
				}
			}
			m[from+"->"+to] += int64(s.GetCounter().GetValue())
		}
	}
	return m
}

// cutSummaries groups the file's cuts by window and splits the exits of
// each window's messages from those sent before it.
func (n *Network) cutSummaries(rows []Row, tiers []string) []CutSummary {
	var out []CutSummary
	for _, c := range n.Spec.Cuts {
		i := slices.IndexFunc(out, func(s CutSummary) bool { return s.AtS == c.At.Seconds() && s.ForS == c.For.Seconds() })
		if i >= 0 {
			out[i].Links = append(out[i].Links, c.Link)
			continue
		}
		before, during := map[string][]time.Duration{}, map[string][]time.Duration{}
		for _, r := range rows {
			if r.Results == 0 {
				continue
			}
			switch {
			case r.Sent < c.At:
				before[r.Tier] = append(before[r.Tier], r.Latency)
			case r.Sent < c.At+c.For:
				during[r.Tier] = append(during[r.Tier], r.Latency)
			}
		}
		s := CutSummary{Links: []string{c.Link}, AtS: c.At.Seconds(), ForS: c.For.Seconds(),
			Before: map[string]Percentiles{}, During: map[string]Percentiles{}}
		for _, t := range tiers {
			if len(before[t]) > 0 {
				s.Before[t] = percentiles(before[t])
			}
			if len(during[t]) > 0 {
				s.During[t] = percentiles(during[t])
			}
		}
		out = append(out, s)
	}
	return out
}

// WANBytes sums the bytes of the links between sites.
func WANBytes(links []LinkSummary) int64 {
	var n int64
	for _, l := range links {
		if l.WAN {
			n += l.Bytes
		}
	}
	return n
}

// printLinks writes the links and cuts tables, tiers in pipeline order.
func printLinks(w io.Writer, s Summary, tiers []string) {
	if len(s.Links) > 0 {
		fmt.Fprintf(w, "links (WAN bytes %d):\n", WANBytes(s.Links))
		for _, l := range s.Links {
			fmt.Fprintf(w, "  %-15s %11d bytes (up %d, down %d), %d messages; carries %s\n",
				l.From+"->"+l.To, l.Bytes, l.BytesUp, l.BytesDown, l.Messages, strings.Join(l.Carries, ", "))
		}
	}
	for _, c := range s.Cuts {
		fmt.Fprintf(w, "cut of %s at %gs for %gs; round trips of the messages sent before it / during it:\n", strings.Join(c.Links, " and "), c.AtS, c.ForS)
		for _, t := range tiers {
			b, d := c.Before[t], c.During[t]
			if b.Count+d.Count > 0 {
				fmt.Fprintf(w, "  exit %-8s before: %5d, p50 %7.1f ms, p99 %7.1f ms   during: %5d, p50 %7.1f ms, p99 %7.1f ms\n",
					t, b.Count, b.P50, b.P99, d.Count, d.P50, d.P99)
			}
		}
	}
}
