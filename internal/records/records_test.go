package records

import (
	"os"
	"testing"

	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/wire"
)

// TestDestinationOf: a record for a tier or the results stays on the
// writing site's topic when that is where it lives, else it goes to the
// queue of the link to its site with the route the uplink delivers it by.
func TestDestinationOf(t *testing.T) {
	b, err := os.ReadFile("../pipeline/testdata/continuum.good.yml")
	if err != nil {
		t.Fatal(err)
	}
	p, err := pipeline.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		from, tier string
		want       Destination
	}{
		{"edge", "edge", Destination{Topic: p.InputTopic("edge")}},
		{"edge", "fog", Destination{Topic: p.UplinkTopic("fog"), Route: wire.RouteTier("fog")}},
		{"fog", "cloud", Destination{Topic: p.UplinkTopic("cloud"), Route: wire.RouteTier("cloud")}},
		{"edge", "", Destination{Topic: p.ResultsTopic()}},
		{"cloud", "", Destination{Topic: p.UplinkTopic("edge"), Route: wire.RouteResults}},
	} {
		got := DestinationOf(p, tc.from, tc.tier)
		if got != tc.want {
			t.Errorf("from %s, tier %q: %+v, want %+v", tc.from, tc.tier, got, tc.want)
		}
		rec, err := Result(got, &wire.Result{ID: "r", Device: "cam", Tier: "edge"})
		if err != nil {
			t.Fatal(err)
		}
		route := ""
		for _, h := range rec.Headers {
			if h.Key == wire.HeaderRoute {
				route = string(h.Value)
			}
		}
		if rec.Topic != tc.want.Topic || route != tc.want.Route || string(rec.Key) != "cam" {
			t.Errorf("from %s, tier %q: record on %s, route %q, key %q", tc.from, tc.tier, rec.Topic, route, rec.Key)
		}
	}
}
