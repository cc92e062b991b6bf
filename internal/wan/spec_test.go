package wan

import (
	"strings"
	"testing"
	"time"
)

func TestLoadGood(t *testing.T) {
	s, err := Load("testdata/good.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := []Link{
		{From: "devices", To: "edge",
			Up:   Shape{Latency: 2 * time.Millisecond, Bandwidth: 12_500_000},
			Down: Shape{Latency: 2 * time.Millisecond, Bandwidth: 12_500_000}},
		{From: "edge", To: "fog",
			Up:   Shape{Latency: 15 * time.Millisecond, Jitter: 2 * time.Millisecond, Bandwidth: 2_500_000},
			Down: Shape{Latency: 15 * time.Millisecond, Jitter: 2 * time.Millisecond, Bandwidth: 64_000}},
		{From: "fog", To: "cloud",
			Up:   Shape{Latency: 30 * time.Millisecond, Jitter: 3 * time.Millisecond, Bandwidth: 187_500_000},
			Down: Shape{Latency: 31 * time.Millisecond}},
	}
	if len(s.Links) != len(want) {
		t.Fatalf("links = %+v, want %+v", s.Links, want)
	}
	for i := range want {
		if s.Links[i] != want[i] {
			t.Errorf("links[%d] = %+v, want %+v", i, s.Links[i], want[i])
		}
	}
	wantCuts := []Cut{{"edge->fog", 20 * time.Second, 10 * time.Second}, {"edge->fog", 30 * time.Second, time.Minute}}
	if len(s.Cuts) != 2 || s.Cuts[0] != wantCuts[0] || s.Cuts[1] != wantCuts[1] {
		t.Errorf("cuts = %+v, want %+v", s.Cuts, wantCuts)
	}
}

func TestShippedExamples(t *testing.T) {
	for _, f := range []string{"wan.yaml", "wan-cut.yaml"} {
		t.Run(f, func(t *testing.T) {
			s, err := Load("../../deploy/examples/" + f)
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range s.Links {
				if l.Up.Latency == 0 || l.Up.Bandwidth == 0 || l.Down.Latency == 0 || l.Down.Bandwidth == 0 {
					t.Errorf("link %s is not shaped both ways: %+v", l.Name(), l)
				}
			}
			if f == "wan-cut.yaml" && len(s.Cuts) == 0 {
				t.Error("no cuts")
			}
		})
	}
}

// Every problem is reported at once, each under its path.
func TestLoadBadReportsEveryProblem(t *testing.T) {
	_, err := Load("testdata/bad-many.yaml")
	if err == nil {
		t.Fatal("bad network loaded")
	}
	for _, want := range []string{
		"testdata/bad-many.yaml: ",
		"links[0].up.latncy: unknown field (line 7); did you mean latency?",
		"links[2].down.jitter: a list is not a string (line 14)",
		"cuts[3].until: unknown field (line 20)",
		`links[0].latency: "15" is not a duration`,
		"links[0].up.bandwidth: 4kbit must be between 8kbit",
		`links[0].bandwidth: "20MB" is not a bandwidth`,
		"links[1]: link edge->fog is already links[0]",
		`links[2]: from and to are both "cloud"`,
		"links[2].down.latency: 1500us must be a whole number of milliseconds",
		"links[3].from: required",
		`links[3].to: "x -> y" must not contain spaces or "->"`,
		`cuts[0].link: "fog->edge" is not a declared link (have edge->fog, cloud->cloud)`,
		"cuts[0].for: 0s must be positive",
		"cuts[1].at: -1s must not be negative",
		"cuts[1].for: required",
		"cuts[3]: overlaps cuts[2] on link edge->fog",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	// A shorthand problem is reported once, not once per direction; a
	// jitter is not compared with a latency that is itself wrong.
	if n := strings.Count(err.Error(), `links[0].latency: "15"`); n != 1 {
		t.Errorf("shorthand latency reported %d times:\n%v", n, err)
	}
	if strings.Contains(err.Error(), "must not exceed the latency") {
		t.Errorf("jitter compared with a bad latency:\n%v", err)
	}
}

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"empty", "", "empty document"},
		{"no links", "cuts: []\n", "links: at least one link is required"},
		{"unknown top-level key", "links: [{from: a, to: b}]\nlinkz: []\n", "linkz: unknown field (line 2); did you mean links?"},
		{"misspelt shape key", "links:\n  - from: a\n    to: b\n    bandwith: 1mbit\n", "links[0].bandwith: unknown field (line 4); did you mean bandwidth?"},
		{"mistyped value", "links: [{from: a, to: b, up: 5ms}]\n", "links[0].up: \"5ms\" is not a mapping (line 1)"},
		{"jitter above latency", "links: [{from: a, to: b, up: {latency: 5ms, jitter: 6ms}}]\n", "links[0].up.jitter: 6ms must not exceed the latency 5ms"},
		{"direction over shorthand", "links: [{from: a, to: b, latency: 5ms, up: {latency: 1ms, jitter: 2ms}}]\n", "links[0].up.jitter: 2ms must not exceed the latency 1ms"},
		{"negative latency", "links: [{from: a, to: b, latency: -5ms}]\n", "links[0].latency: -5ms must not be negative"},
		{"cut without link", "links: [{from: a, to: b}]\ncuts: [{at: 1s, for: 1s}]\n", "cuts[0].link: required"},
		{"cut with a bad duration", "links: [{from: a, to: b}]\ncuts: [{link: a->b, at: soon, for: 1s}]\n", `cuts[0].at: "soon" is not a duration`},
		{"syntax error", "links: [\n", "yaml:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestParseBandwidth(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		err  string
	}{
		{"100Mbit", 12_500_000, ""},
		{"20Mbit", 2_500_000, ""},
		{"512kbit", 64_000, ""},
		{"8Mbit", 1_000_000, ""},
		{"1.5Gbit", 187_500_000, ""},
		{"100mbit", 12_500_000, ""},
		{"8000bit", 1000, ""},
		{"7kbit", 0, "between 8kbit and 8Tbit"},
		{"100MB", 0, "not a bandwidth"},
		{"100Mbps", 0, "not a bandwidth"},
		{"100", 0, "not a bandwidth"},
		{"-1Mbit", 0, "not a bandwidth"},
		{"", 0, "not a bandwidth"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseBandwidth(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("ParseBandwidth(%q) = %d, %v; want error with %q", tc.in, got, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ParseBandwidth(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
			}
		})
	}
}
