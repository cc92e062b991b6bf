package up

import (
	"fmt"
	"io"
	"strings"

	"github.com/ddnn-continuum/ddnn/internal/httpapi"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
)

func (s *Supervisor) announce() {
	w := s.cfg.Announce
	if w == nil {
		return
	}
	p, site := s.p, &s.site
	// One write per site: sites announce concurrently.
	var b strings.Builder
	baseline := ""
	if s.cfg.Monolith {
		baseline = " as the monolith baseline"
	}
	if s.severalSites() {
		names := make([]string, len(s.tiers))
		for i := range s.tiers {
			names[i] = s.tiers[i].Name
		}
		tiers := "tiers"
		if len(names) == 1 {
			tiers = "tier"
		}
		what := fmt.Sprintf("%d %s (%s)", len(names), tiers, strings.Join(names, ", "))
		switch {
		case s.cfg.Monolith && len(names) > 0:
			what = fmt.Sprintf("every tier (%s) in one monolith process", strings.Join(names, ", "))
		case s.cfg.Monolith:
			what = fmt.Sprintf("no tier (every tier on site %q)", s.placement)
		}
		fmt.Fprintf(&b, "pipeline %q site %q is up%s: %s, %s\n", p.Name, site.Name, baseline, what, processes(len(s.children())))
	} else if s.cfg.Monolith {
		fmt.Fprintf(&b, "pipeline %q is up%s: %d tiers in one monolith process, %s\n", p.Name, baseline, len(p.Tiers), processes(len(s.children())))
	} else {
		fmt.Fprintf(&b, "pipeline %q is up: %d tiers, %s\n", p.Name, len(p.Tiers), processes(len(s.children())))
	}
	switch {
	case s.broker != nil && s.dataDir == "":
		fmt.Fprintf(&b, "  kafka:    %s (embedded, in memory with --ephemeral: data is lost when ddnn up stops)\n", s.brokers)
	case s.broker != nil:
		fmt.Fprintf(&b, "  kafka:    %s (embedded, data kept in %s)\n", s.brokers, s.dataDir)
	default:
		fmt.Fprintf(&b, "  kafka:    %s\n", s.brokers)
	}
	first := len(s.tiers) > 0 && s.tiers[0].Name == p.Tiers[0].Name
	if first {
		scheme, cred := "http", ""
		if site.Funnel.TLS.Enabled() {
			scheme = "https"
		}
		if p.Auth.Devices == pipeline.AuthToken {
			cred = ", with a device token: ddnn devices add -f " + p.PathFromHere(p.Auth.DevicesFile) + " NAME"
		}
		fmt.Fprintf(&b, "  send:     POST %s://%s%s  (raw %s %v bytes or JSON {\"data\":[…]}%s)\n", scheme, site.Funnel.Listen, httpapi.PathIngest, p.Input.DType, p.Input.Shape, cred)
		if site.Funnel.CoAPListen != "off" {
			fmt.Fprintf(&b, "  or:       POST coap://%s%s  (content-format 42 or 50, Block1 for large samples)\n", site.Funnel.CoAPListen, httpapi.PathIngest)
		}
		if site.Funnel.CoAPSListen != "off" {
			dcred := ""
			if p.Auth.DevicesPSKKeyFile != "" {
				dcred = ", with a pre-shared key: ddnn devices psk -f " + p.PathFromHere(p.Auth.DevicesFile) + " --key " + p.PathFromHere(p.Auth.DevicesPSKKeyFile) + " NAME"
			}
			fmt.Fprintf(&b, "  or:       POST coaps://%s%s  (CoAP over DTLS%s)\n", site.Funnel.CoAPSListen, httpapi.PathIngest, dcred)
		}
		claim := ""
		if p.Auth.Devices == pipeline.AuthToken {
			claim = "; a ddnn-device header is believed only signed (ddnn-device-sig, docs/security.md)"
		}
		fmt.Fprintf(&b, "  or:       produce to topic %s%s\n", p.InputTopic(p.Tiers[0].Name), claim)
	}
	zone := "the service token in " + s.cfg.ServiceTokenFile
	if s.cfg.ServiceTokenFile == "" {
		zone = "no credential: auth.service is none"
	}
	fmt.Fprintf(&b, "  delivery: http://%s  (the pipeline's own routes; %s; other sites use %s)\n", site.Funnel.DeliveryListen, zone, site.Funnel.URL)
	if r := p.ResultsSite(); r == nil || r.Name == site.Name {
		fmt.Fprintf(&b, "  results:  topic %s  (ddnn results -f %s --follow)\n", p.ResultsTopic(), s.cfg.File)
	} else {
		fmt.Fprintf(&b, "  results:  on site %q\n", r.Name)
	}
	for _, l := range s.links {
		url, via := s.cfg.LinkURLs[l], ", from --link-url"
		if url == "" {
			via = ""
			for _, to := range p.Sites() {
				if to.Name == l.To {
					url = to.Funnel.URL
				}
			}
		}
		fmt.Fprintf(&b, "  uplink:   topic %s to site %q (%s%s)\n", p.UplinkTopic(l.To), l.To, url, via)
	}
	fmt.Fprintf(&b, "  metrics:  http://%s/metrics  (every part's, the funnel's and the end-to-end latency too; a Prometheus scrape config: docs/streaming.md#metrics)\n", site.Admin.Listen)
	io.WriteString(w, b.String())
}

// processes is "n processes", or "1 process".
func processes(n int) string {
	if n == 1 {
		return "1 process"
	}
	return fmt.Sprintf("%d processes", n)
}
