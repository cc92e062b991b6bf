package wan

import (
	"maps"
	"slices"
	"strings"
	"testing"
)

// The shipped WAN routes the pipeline's flows and the cloud-only
// baseline's the way docs/wan.md says: direct links where declared,
// chains otherwise, and nothing for ends no link joins.
func TestPlanShippedWAN(t *testing.T) {
	s, err := Load("../../deploy/examples/wan.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		flows   []Flow
		routes  [][]string
		targets map[string]string
	}{
		{
			name: "pipeline",
			flows: []Flow{
				{"devices", "edge", "127.0.0.1:8080"},
				{"edge", "fog", "127.0.0.1:8180"},
				{"fog", "cloud", "127.0.0.1:8280"},
				{"fog", "edge", "127.0.0.1:8080"},
				{"cloud", "edge", "127.0.0.1:8080"},
			},
			routes: [][]string{{"devices->edge"}, {"edge->fog"}, {"fog->cloud"}, {"fog->edge"}, {"cloud->fog", "fog->edge"}},
			targets: map[string]string{
				"devices->edge": "127.0.0.1:8080", "edge->fog": "127.0.0.1:8180", "fog->cloud": "127.0.0.1:8280",
				"fog->edge": "127.0.0.1:8080", "cloud->fog": "fog->edge",
			},
		},
		{
			name: "cloud-only",
			flows: []Flow{
				{"devices", "cloud", "127.0.0.1:8280"},
				{"cloud", "edge", "127.0.0.1:8080"},
				{"edge", "devices", "127.0.0.1:1"}, // no link that way: not emulated
			},
			routes: [][]string{{"devices->edge", "edge->fog", "fog->cloud"}, {"cloud->fog", "fog->edge"}, nil},
			targets: map[string]string{
				"devices->edge": "edge->fog", "edge->fog": "fog->cloud", "fog->cloud": "127.0.0.1:8280",
				"cloud->fog": "fog->edge", "fog->edge": "127.0.0.1:8080",
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			targets, routes, err := s.Plan(tc.flows)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.EqualFunc(routes, tc.routes, slices.Equal) {
				t.Errorf("routes = %q, want %q", routes, tc.routes)
			}
			if !maps.Equal(targets, tc.targets) {
				t.Errorf("targets = %v, want %v", targets, tc.targets)
			}
		})
	}
}

// One proxy forwards to one place: flows that would leave a link towards
// different places are refused, naming both.
func TestPlanConflict(t *testing.T) {
	s, err := Load("../../deploy/examples/wan.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = s.Plan([]Flow{{"devices", "cloud", "127.0.0.1:8280"}, {"edge", "fog", "127.0.0.1:8180"}})
	if err == nil {
		t.Fatal("no error for edge->fog carrying two flows to different places")
	}
	for _, want := range []string{"edge->fog", "devices->cloud", "fog->cloud", "127.0.0.1:8180"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}
