package funnel

import (
	"strings"

	"github.com/ddnn-continuum/ddnn/internal/command"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
)

// Reload applies p's device rate limit of this funnel's site in place,
// from the next message on (every device starts again with a full
// bucket), and logs it with what else of the site's funnel section
// changed and was ignored because it needs a restart (listeners, TLS,
// connection and size bounds, waits). When p has no such site, nothing
// changes and the error says why.
func (f *Funnel) Reload(p *pipeline.Pipeline) error {
	f.reloadMu.Lock()
	defer f.reloadMu.Unlock()
	site, err := p.OnSite(f.site.Name)
	if err != nil {
		return err
	}
	var applied, ignored []pipeline.Difference
	for _, c := range pipeline.Diff("funnel", f.applied, site.Funnel) {
		if strings.HasPrefix(c.Path, "funnel.device_rate_limit.") {
			applied = append(applied, c)
		} else {
			ignored = append(ignored, c)
		}
	}
	if len(applied) > 0 {
		f.rl.Store(newDeviceLimiter(site.Funnel.DeviceRateLimit))
		f.applied.DeviceRateLimit = site.Funnel.DeviceRateLimit
	}
	command.LogChanges(f.log, applied, ignored, "needs a restart of the funnel")
	return nil
}

// Reload is the funnel's Reload.
func (s *Server) Reload(p *pipeline.Pipeline) error { return s.f.Reload(p) }
