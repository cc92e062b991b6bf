package pipeline

import (
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
)

// LocalSite names the implicit site of a pipeline without sites:.
const LocalSite = "local"

// Site is one place the pipeline runs, such as an edge, fog or cloud
// cluster: its own Kafka, funnel and supervisor. The tiers placed on it
// consume from its Kafka and deliver to its funnel.
//
// A declared site inherits the pipeline-wide settings it leaves unset from
// the top-level kafka and funnel sections (partitions, client_id,
// produce_timeout, max_record_bytes, replication_factor, topic_config,
// embedded_sync_writes, tls, sasl, and on a site running the embedded
// broker embedded_tls, embedded_users and embedded_acls;
// max_request_bytes, max_connections). Its addresses are its own: kafka.brokers, kafka.embedded_listen,
// kafka.embedded_data_dir, funnel.listen, funnel.coap_listen, funnel.coaps_listen, funnel.url
// and admin.listen take the single-site defaults when unset and are never
// inherited.
type Site struct {
	Name   string     `yaml:"name"`
	Kafka  Kafka      `yaml:"kafka"`
	Funnel SiteFunnel `yaml:"funnel"`
	Admin  Admin      `yaml:"admin"`
}

// SiteFunnel is a site's funnel: the funnel settings plus the address other
// sites reach it at.
type SiteFunnel struct {
	Funnel `yaml:",inline"`
	// URL is the base URL other sites' uplinks use to reach this funnel's
	// delivery zone; default http://<delivery_listen>.
	URL string `yaml:"url"`
}

// Results places the results topic.
type Results struct {
	// Site holds <name>.results; default the first tier's site.
	Site string `yaml:"site"`
}

// Link is a directed cross-site link that carries data: forwards to a tier
// on another site, or exits to a results site elsewhere.
type Link struct {
	From, To string
}

// String is the link as FROM->TO.
func (l Link) String() string { return l.From + "->" + l.To }

// Sites returns the effective sites: the declared ones with defaults and
// inherited settings filled in, or the implicit site LocalSite made of the
// top-level kafka, funnel and admin sections.
func (p *Pipeline) Sites() []Site {
	if len(p.SiteList) > 0 {
		return p.SiteList
	}
	return []Site{{
		Name:   LocalSite,
		Kafka:  p.Kafka,
		Funnel: SiteFunnel{Funnel: p.Funnel, URL: "http://" + p.Funnel.DeliveryListen},
		Admin:  p.Admin,
	}}
}

// site returns the declared site called name, or the implicit one.
func (p *Pipeline) site(name string) *Site {
	if len(p.SiteList) == 0 {
		if name != LocalSite {
			return nil
		}
		s := p.Sites()[0]
		return &s
	}
	for i := range p.SiteList {
		if p.SiteList[i].Name == name {
			return &p.SiteList[i]
		}
	}
	return nil
}

// tierSite is the name of the site t runs on.
func (p *Pipeline) tierSite(t *Tier) string {
	if len(p.SiteList) == 0 {
		return LocalSite
	}
	return t.Site
}

// SiteOf returns the site the tier runs on, nil for an unknown tier. The
// implicit site is built afresh from the top-level sections on each call.
func (p *Pipeline) SiteOf(tier string) *Site {
	t, _, err := p.Tier(tier)
	if err != nil {
		return nil
	}
	return p.site(p.tierSite(t))
}

// ResultsSite returns the site holding <name>.results: results.site, else
// the first tier's site.
func (p *Pipeline) ResultsSite() *Site {
	if p.Results.Site != "" {
		return p.site(p.Results.Site)
	}
	if len(p.Tiers) == 0 {
		return nil
	}
	return p.site(p.tierSite(&p.Tiers[0]))
}

// TopicsOn lists the topics that live on site's Kafka: the input and
// dead-letter topics of its tiers, <name>.results on the results site and
// the queue and dead-letter topic of each uplink it sends from. For the
// implicit site it is Topics().
func (p *Pipeline) TopicsOn(site string) []string {
	var ts []string
	for i := range p.Tiers {
		if t := &p.Tiers[i]; p.tierSite(t) == site {
			ts = append(ts, p.InputTopic(t.Name), p.DLQTopic(t.Name))
		}
	}
	if r := p.ResultsSite(); r != nil && r.Name == site {
		ts = append(ts, p.ResultsTopic())
	}
	for _, l := range p.Links() {
		if l.From == site {
			ts = append(ts, p.UplinkTopic(l.To), p.UplinkDLQTopic(l.To))
		}
	}
	return ts
}

// Links lists each directed cross-site link that carries data, once, in
// tier order: a tier's forward to the next tier on another site, then its
// exits to a results site elsewhere (every tier may exit). A pipeline on
// one site has none.
func (p *Pipeline) Links() []Link {
	var links []Link
	add := func(from, to string) {
		if l := (Link{From: from, To: to}); from != to && !slices.Contains(links, l) {
			links = append(links, l)
		}
	}
	results := ""
	if r := p.ResultsSite(); r != nil {
		results = r.Name
	}
	for i := range p.Tiers {
		from := p.tierSite(&p.Tiers[i])
		if !p.Last(i) {
			add(from, p.tierSite(&p.Tiers[i+1]))
		}
		add(from, results)
	}
	return links
}

// SiteDataDir is the embedded broker's data directory of s, absolute:
// kafka.embedded_data_dir resolved against the YAML's directory, else
// under the working directory .run/<name>/<site>/kafka for a declared
// site and .run/<name>/kafka for the implicit one (as before sites).
func (p *Pipeline) SiteDataDir(s *Site) (string, error) {
	if d := s.Kafka.EmbeddedDataDir; d != "" {
		return filepath.Abs(p.Path(d))
	}
	if len(p.SiteList) == 0 {
		return filepath.Abs(filepath.Join(".run", p.Name, "kafka"))
	}
	return filepath.Abs(filepath.Join(".run", p.Name, s.Name, "kafka"))
}

// Site returns the effective site called name (LocalSite for a pipeline
// without sites:); an unknown name is an error naming the known ones.
func (p *Pipeline) Site(name string) (*Site, error) {
	s := p.site(name)
	if s == nil {
		names := p.siteNames()
		if len(names) == 0 {
			names = []string{LocalSite}
		}
		return nil, fmt.Errorf("pipeline %q has no site %q (sites: %s)", p.Name, name, strings.Join(names, ", "))
	}
	return s, nil
}

// SiteView is the pipeline as one site runs it: the site's effective
// kafka, funnel and admin sections, beside the whole pipeline for its
// tiers, placement, auth and the rest. The Pipeline's own Kafka, Funnel
// and Admin are the pipeline-wide settings sites inherit, never a site's:
// code that talks to a site's Kafka or serves its funnel takes a SiteView,
// so the two cannot be mixed up.
type SiteView struct {
	Site
	Pipeline *Pipeline
}

// OnSite returns the view of the site called name. The view shares the
// tiers, sites and placement with p; its site sections are a copy. An
// unknown site is an error naming the known ones.
func (p *Pipeline) OnSite(name string) (*SiteView, error) {
	s, err := p.Site(name)
	if err != nil {
		return nil, err
	}
	return &SiteView{Site: *s, Pipeline: p}, nil
}

// OnTierSite returns the view of the site tier runs on; an unknown tier
// is an error.
func (p *Pipeline) OnTierSite(tier string) (*SiteView, error) {
	t, _, err := p.Tier(tier)
	if err != nil {
		return nil, err
	}
	return p.OnSite(p.tierSite(t))
}

// PlaceAllOn moves every tier to the site called name, as the cloud-only
// baseline runs them: Links, TopicsOn and the rest follow the new
// placement. The results stay where they were: results.site is set to
// the results site before the move (its default, the first tier's site,
// would otherwise move along). name must be a declared site; for a
// pipeline without sites: "" and LocalSite leave it as it is. Tiers are
// changed in place, so views made with OnSite before the call see the
// new placement too.
func (p *Pipeline) PlaceAllOn(name string) error {
	if len(p.SiteList) == 0 && (name == "" || name == LocalSite) {
		return nil
	}
	if len(p.SiteList) == 0 || p.site(name) == nil {
		_, err := p.OnSite(name)
		return err
	}
	if r := p.ResultsSite(); r != nil {
		p.Results.Site = r.Name
	}
	for i := range p.Tiers {
		p.Tiers[i].Site = name
	}
	return nil
}

func (p *Pipeline) siteNames() []string {
	names := make([]string, len(p.SiteList))
	for i := range p.SiteList {
		names[i] = p.SiteList[i].Name
	}
	return names
}

// validateSites checks the sites and the placement of tiers and results.
func (p *Pipeline) validateSites() []error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{field}, args...)...))
	}
	tierPath := func(i int) string { return fmt.Sprintf("tiers[%d] (%s)", i, p.Tiers[i].Name) }
	if len(p.SiteList) == 0 {
		for i := range p.Tiers {
			if s := p.Tiers[i].Site; s != "" {
				bad(tierPath(i)+".site", "%q given without a sites: section", s)
			}
		}
		if s := p.Results.Site; s != "" {
			bad("results.site", "%q given without a sites: section", s)
		}
		return errs
	}

	// Addresses are a site's own: at the top level they would be ignored.
	for _, a := range []struct{ field, v string }{
		{"kafka.embedded_listen", p.Kafka.EmbeddedListen},
		{"kafka.embedded_data_dir", p.Kafka.EmbeddedDataDir},
		{"funnel.listen", p.Funnel.Listen},
		{"funnel.delivery_listen", p.Funnel.DeliveryListen},
		{"funnel.coap_listen", p.Funnel.CoAPListen},
		{"funnel.coaps_listen", p.Funnel.CoAPSListen},
		{"admin.listen", p.Admin.Listen},
	} {
		if a.v != "" {
			bad(a.field, "set it per site (sites[].%s) when sites: is present", a.field)
		}
	}
	if len(p.Kafka.Brokers) > 0 {
		bad("kafka.brokers", "set it per site (sites[].kafka.brokers) when sites: is present")
	}

	known := map[string]bool{}
	var names []string // the valid ones, for messages
	for i := range p.SiteList {
		s := &p.SiteList[i]
		f := p.sitePath(i)
		switch {
		case s.Name == "":
			bad(f+".name", "required")
		case !nameRE.MatchString(s.Name):
			bad(f+".name", "%q must be lowercase letters, digits, '-' or '_'", s.Name)
		case known[s.Name]:
			bad(f+".name", "duplicate site name %q", s.Name)
		default:
			names = append(names, s.Name)
		}
		known[s.Name] = true
		errs = append(errs, p.validateSite(i)...)
	}
	errs = append(errs, p.validateSharing()...)

	list := strings.Join(names, ", ")
	for i := range p.Tiers {
		switch s := p.Tiers[i].Site; {
		case s == "":
			bad(tierPath(i)+".site", "required when sites: is present (one of %s)", list)
		case !slices.Contains(names, s):
			bad(tierPath(i)+".site", "%q unknown (sites: %s)", s, list)
		}
	}
	if s := p.Results.Site; s != "" && !slices.Contains(names, s) {
		bad("results.site", "%q unknown (sites: %s)", s, list)
	}
	return errs
}

func (p *Pipeline) sitePath(i int) string {
	if n := p.SiteList[i].Name; n != "" {
		return fmt.Sprintf("sites[%d] (%s)", i, n)
	}
	return fmt.Sprintf("sites[%d]", i)
}

// validateSite checks the sections of site i. A bad pipeline-wide setting
// the site inherited is reported once, at the top level; the site reports
// its own values and what its Kafka cannot honour.
func (p *Pipeline) validateSite(i int) []error {
	s := &p.SiteList[i]
	f := p.sitePath(i)
	inherited := map[string]bool{}
	for _, err := range append(p.Kafka.validateSettings("kafka"), p.Funnel.validateSettings("funnel")...) {
		inherited[err.Error()] = true
	}
	var own []error
	own = append(own, s.Kafka.validateSettings("kafka")...)
	own = append(own, s.Kafka.validatePlacement("kafka")...)
	own = append(own, s.Funnel.validateSettings("funnel")...)
	own = append(own, s.Funnel.validatePlacement("funnel")...)
	own = append(own, checkAddr("admin.listen", s.Admin.Listen))
	var errs []error
	for _, err := range own {
		if err != nil && !inherited[err.Error()] {
			errs = append(errs, fmt.Errorf("%s.%w", f, err))
		}
	}
	if n := p.Input.RecordBytes(); s.Kafka.MaxRecordBytes != p.Kafka.MaxRecordBytes && n > s.Kafka.MaxRecordBytes {
		errs = append(errs, fmt.Errorf("%s.kafka.max_record_bytes: %d is under the %d bytes a %s %v sample's record takes",
			f, s.Kafka.MaxRecordBytes, n, p.Input.DType, p.Input.Shape))
	}
	if u, err := url.Parse(s.Funnel.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("%s.funnel.url: %q is not an http(s) URL", f, s.Funnel.URL))
	}
	return errs
}

// validateSharing reports two sites on one listener (compared as written)
// or one embedded broker data dir.
func (p *Pipeline) validateSharing() []error {
	var errs []error
	type owner struct {
		site int
		path string
	}
	listeners := map[string]owner{} // by protocol and host:port
	dataDirs := map[string]owner{}
	for i := range p.SiteList {
		s := &p.SiteList[i]
		f := p.sitePath(i)
		for _, a := range []struct {
			field, proto, v string
			used            bool
		}{
			{"kafka.embedded_listen", "tcp", s.Kafka.EmbeddedListen, s.Kafka.Embedded()},
			{"funnel.listen", "tcp", s.Funnel.Listen, true},
			{"funnel.delivery_listen", "tcp", s.Funnel.DeliveryListen, true},
			{"funnel.coap_listen", "udp", s.Funnel.CoAPListen, s.Funnel.CoAPListen != "off"},
			{"funnel.coaps_listen", "udp", s.Funnel.CoAPSListen, s.Funnel.CoAPSListen != "off"},
			{"admin.listen", "tcp", s.Admin.Listen, true},
		} {
			if _, port, err := net.SplitHostPort(a.v); !a.used || err != nil || port == "0" {
				continue // port 0 takes a free port
			}
			key := a.proto + " " + a.v
			if o, ok := listeners[key]; !ok {
				listeners[key] = owner{i, f + "." + a.field}
			} else if o.site != i {
				errs = append(errs, fmt.Errorf("%s.%s: %s is also %s", f, a.field, a.v, o.path))
			}
		}
		if d := s.Kafka.EmbeddedDataDir; d != "" && s.Kafka.Embedded() {
			key := filepath.Clean(d)
			if o, ok := dataDirs[key]; ok {
				errs = append(errs, fmt.Errorf("%s.kafka.embedded_data_dir: %q is also %s: a broker's data dir is its own", f, d, o.path))
			} else {
				dataDirs[key] = owner{i, f + ".kafka.embedded_data_dir"}
			}
		}
	}
	return errs
}
