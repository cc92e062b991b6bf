package wan

import (
	"errors"
	"fmt"
	"math"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/ddnn-continuum/ddnn/internal/yamlcheck"
)

// Spec is a decoded and validated network file.
type Spec struct {
	Links []Link
	Cuts  []Cut
}

// Link is one emulated path. Its client is on the From side and its server
// on the To side: Up shapes the bytes the client sends (From→To), Down the
// bytes the server answers (To→From).
type Link struct {
	From, To string
	Up, Down Shape
}

// Name is the link's name in targets, cuts and errors: "from->to".
func (l Link) Name() string { return l.From + "->" + l.To }

// Shape is what one direction of a link does to the bytes crossing it.
type Shape struct {
	// Latency is added to every chunk of bytes, whole milliseconds.
	Latency time.Duration
	// Jitter spreads the latency uniformly over [Latency-Jitter,
	// Latency+Jitter), whole milliseconds, at most Latency. Chunks are
	// never reordered.
	Jitter time.Duration
	// Bandwidth in bytes per second; 0 is unlimited.
	Bandwidth int64
}

// Cut takes a link down from At (relative to the start of Run) for For.
type Cut struct {
	Link    string
	At, For time.Duration
}

// Load reads and parses the network file at path.
func Load(path string) (*Spec, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("network: %w", err)
	}
	s, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("network %s: %w", path, err)
	}
	return s, nil
}

// The file as written: values stay strings until validation so that every
// problem names its path, and an omitted value is told from an explicit 0.
type fileYAML struct {
	Links []linkYAML `yaml:"links"`
	Cuts  []cutYAML  `yaml:"cuts"`
}

type linkYAML struct {
	From      string `yaml:"from"`
	To        string `yaml:"to"`
	shapeYAML `yaml:",inline"`
	Up        *shapeYAML `yaml:"up"`
	Down      *shapeYAML `yaml:"down"`
}

type shapeYAML struct {
	Latency   string `yaml:"latency"`
	Jitter    string `yaml:"jitter"`
	Bandwidth string `yaml:"bandwidth"`
}

type cutYAML struct {
	Link string `yaml:"link"`
	At   string `yaml:"at"`
	For  string `yaml:"for"`
}

// Parse decodes a network file strictly and validates it, reporting every
// problem at once, each with its path: an unknown key (with its line and
// the nearest field name when one is close), a value of the wrong kind,
// then every invalid setting.
func Parse(b []byte) (*Spec, error) {
	doc, err := yamlcheck.Parse(b, reflect.TypeFor[fileYAML]())
	if doc == nil {
		return nil, err
	}
	errs := []error{err}
	var f fileYAML
	// A value of the wrong kind is left empty; the check has reported it.
	if err := doc.Decode(&f); err != nil && !errors.As(err, new(*yaml.TypeError)) {
		return nil, err
	}
	s, verrs := f.spec()
	if err := errors.Join(append(errs, verrs...)...); err != nil {
		return nil, err
	}
	return s, nil
}

func (f *fileYAML) spec() (*Spec, []error) {
	var errs []error
	bad := func(path, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{path}, args...)...))
	}
	s := &Spec{}
	if len(f.Links) == 0 {
		bad("links", "at least one link is required")
	}
	seen := map[string]int{}
	var declared []string
	for i, ly := range f.Links {
		p := fmt.Sprintf("links[%d]", i)
		l := Link{From: ly.From, To: ly.To}
		for _, e := range []struct{ key, v string }{{"from", ly.From}, {"to", ly.To}} {
			switch {
			case e.v == "":
				bad(p+"."+e.key, "required: the name of a site, e.g. edge")
			case strings.Contains(e.v, "->") || strings.ContainsAny(e.v, " \t\n"):
				bad(p+"."+e.key, "%q must not contain spaces or \"->\"", e.v)
			}
		}
		if l.From != "" && l.From == l.To {
			bad(p, "from and to are both %q", l.From)
		}
		if j, dup := seen[l.Name()]; dup && l.From != "" && l.To != "" {
			bad(p, "link %s is already links[%d]", l.Name(), j)
		} else if l.From != "" && l.To != "" {
			seen[l.Name()] = i
			declared = append(declared, l.Name())
		}
		var up, down shapeYAML
		if ly.Up != nil {
			up = *ly.Up
		}
		if ly.Down != nil {
			down = *ly.Down
		}
		var uerrs, derrs []error
		l.Up, uerrs = shape(p+".up", p, up, ly.shapeYAML)
		l.Down, derrs = shape(p+".down", p, down, ly.shapeYAML)
		errs = append(errs, uerrs...)
		for _, e := range derrs { // a shorthand problem is already reported for up
			if !slices.ContainsFunc(uerrs, func(u error) bool { return u.Error() == e.Error() }) {
				errs = append(errs, e)
			}
		}
		s.Links = append(s.Links, l)
	}
	for i, cy := range f.Cuts {
		p := fmt.Sprintf("cuts[%d]", i)
		c := Cut{Link: cy.Link}
		if c.Link == "" {
			bad(p+".link", "required: a declared link, e.g. edge->fog")
		} else if _, ok := seen[c.Link]; !ok {
			bad(p+".link", "%q is not a declared link (have %s)", c.Link, strings.Join(declared, ", "))
		}
		var err error
		if cy.At == "" {
			bad(p+".at", "required: when the link goes down, e.g. 20s")
		} else if c.At, err = time.ParseDuration(cy.At); err != nil {
			bad(p+".at", "%q is not a duration (e.g. 20s)", cy.At)
		} else if c.At < 0 {
			bad(p+".at", "%s must not be negative", cy.At)
		}
		if cy.For == "" {
			bad(p+".for", "required: how long the link stays down, e.g. 10s")
		} else if c.For, err = time.ParseDuration(cy.For); err != nil {
			bad(p+".for", "%q is not a duration (e.g. 10s)", cy.For)
		} else if c.For <= 0 {
			bad(p+".for", "%s must be positive", cy.For)
		}
		for j, o := range s.Cuts {
			if o.Link == c.Link && c.For > 0 && o.For > 0 && c.At < o.At+o.For && o.At < c.At+c.For {
				bad(p, "overlaps cuts[%d] on link %s", j, c.Link)
			}
		}
		s.Cuts = append(s.Cuts, c)
	}
	return s, errs
}

// shape resolves one direction: its own values, else the link's shorthand.
func shape(path, linkPath string, dir, link shapeYAML) (Shape, []error) {
	var errs []error
	var sh Shape
	pick := func(key, own, shared string) (string, string) {
		if own != "" {
			return own, path + "." + key
		}
		return shared, linkPath + "." + key
	}
	ms := func(key, own, shared string) (time.Duration, bool) {
		v, p := pick(key, own, shared)
		if v == "" {
			return 0, true
		}
		d, err := time.ParseDuration(v)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("%s: %q is not a duration (e.g. 15ms)", p, v))
		case d < 0:
			errs = append(errs, fmt.Errorf("%s: %s must not be negative", p, v))
		case d%time.Millisecond != 0:
			errs = append(errs, fmt.Errorf("%s: %s must be a whole number of milliseconds (the resolution of toxiproxy's latency toxic)", p, v))
		default:
			return d, true
		}
		return 0, false
	}
	var latOK, jitOK bool
	sh.Latency, latOK = ms("latency", dir.Latency, link.Latency)
	sh.Jitter, jitOK = ms("jitter", dir.Jitter, link.Jitter)
	if latOK && jitOK && sh.Jitter > sh.Latency {
		_, p := pick("jitter", dir.Jitter, link.Jitter)
		errs = append(errs, fmt.Errorf("%s: %s must not exceed the latency %s", p, sh.Jitter, sh.Latency))
	}
	if v, p := pick("bandwidth", dir.Bandwidth, link.Bandwidth); v != "" {
		bw, err := ParseBandwidth(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", p, err))
		}
		sh.Bandwidth = bw
	}
	return sh, errs
}

var bandwidthRE = regexp.MustCompile(`^([0-9]+(?:\.[0-9]+)?)\s*([kmgKMG]?)bit$`)

// MinBandwidth is the smallest bandwidth a link takes, in bytes per second:
// toxiproxy's bandwidth toxic counts in KB/s.
const MinBandwidth = 1000

// ParseBandwidth reads a rate in bits per second with an SI prefix
// ("100Mbit", "512kbit", "1.5Gbit") and returns bytes per second.
func ParseBandwidth(s string) (int64, error) {
	m := bandwidthRE.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		return 0, fmt.Errorf("%q is not a bandwidth (e.g. 100Mbit, 512kbit)", s)
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a bandwidth (e.g. 100Mbit, 512kbit)", s)
	}
	switch strings.ToLower(m[2]) {
	case "k":
		v *= 1e3
	case "m":
		v *= 1e6
	case "g":
		v *= 1e9
	}
	bps := math.Round(v / 8)
	if bps < MinBandwidth || bps > 1e12 {
		return 0, fmt.Errorf("%s must be between 8kbit and 8Tbit", s)
	}
	return int64(bps), nil
}

func names(links []Link) []string {
	var ns []string
	for _, l := range links {
		ns = append(ns, l.Name())
	}
	return ns
}
