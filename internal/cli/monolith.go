package cli

import (
	"context"
	"fmt"
	"io"
	goruntime "runtime"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ddnn-continuum/ddnn/funnel"
	"github.com/ddnn-continuum/ddnn/inference"
	"github.com/ddnn-continuum/ddnn/internal/auth"
	"github.com/ddnn-continuum/ddnn/internal/kafka"
	"github.com/ddnn-continuum/ddnn/internal/monolith"
	"github.com/ddnn-continuum/ddnn/internal/onnx"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/socket"
)

func runMonolith(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("monolith", "monolith -f FILE [--site NAME] [--tiers-on SITE] [--workers N] [--admin ADDR]\n\n"+
		"The baseline: consumes the first tier's topic, runs every tier in this\n"+
		"process with a fixed number of workers, produces results. Every tier must\n"+
		"be on one site (--tiers-on SITE places them there: the cloud-only\n"+
		"baseline); it runs on that site's Kafka, and results for a results site\n"+
		"elsewhere go to the site's queue of the link there, as a funnel writes\n"+
		"them. When the site has no brokers it runs its embedded broker in\n"+
		"memory, like ddnn up --ephemeral.", stderr)
	rf := addRoleFlags(fs, stderr, true)
	siteName := fs.String("site", "", "the site the monolith runs on (default: the one site every tier is placed on)")
	ortLib := fs.String("ort-lib", "", "ONNX Runtime shared library (default: $"+onnx.EnvVar+" or the project's install path)")
	workers := fs.Int("workers", goruntime.NumCPU(), "batches run at once, each worker with its own session per tier")
	maxBatch := fs.Int("max-batch", 0, "samples per batch (default: the first tier's connector.max_batch)")
	admin := fs.String("admin", "", "address of /metrics, /healthz and /readyz (default: the site's admin.listen)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *workers < 1 {
		return fmt.Errorf("%w: --workers must be at least 1", errUsage)
	}
	p, log, err := rf.load("monolith")
	if err != nil {
		return err
	}
	site, err := tiersSite(p)
	if err != nil {
		return err
	}
	if *siteName != "" && *siteName != site {
		return fmt.Errorf("%w: --site %s: every tier of pipeline %q is on site %q (--tiers-on %s places them on %s)",
			errUsage, *siteName, p.Name, site, *siteName, *siteName)
	}
	sp, err := rf.onSite(p, site)
	if err != nil {
		return err
	}
	if len(p.SiteList) > 1 {
		log = log.With("site", site)
	}
	if _, err := onnx.Init(*ortLib); err != nil {
		return err
	}
	if *admin == "" {
		*admin = sp.Admin.Listen
	}
	ln, err := socket.Listen(*admin)
	if err != nil {
		return fmt.Errorf("monolith admin: %w", err)
	}
	defer ln.Close()
	topics := p.TopicsOn(site)
	if len(sp.Kafka.Brokers) == 0 {
		s, err := p.Site(site)
		if err != nil {
			return err
		}
		b, err := kafka.StartSiteBroker(p, s, sp.Kafka.EmbeddedListen, true, log)
		if err != nil {
			return err
		}
		defer b.Close()
		fmt.Fprintf(stdout, "embedded Kafka broker on %s (in memory: data is lost when it stops)\n", b.Addr())
	}
	reg, wrapped := newRegistry(p)
	cl, err := kafka.NewClient(&sp.Kafka, "monolith", wrapped, log, monolith.ClientOptions(sp)...)
	if err != nil {
		return fmt.Errorf("monolith: kafka client: %w", err)
	}
	defer cl.Close()
	tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err = kafka.EnsureTopics(tctx, cl, &sp.Kafka, topics...)
	cancel()
	if err != nil {
		return err
	}
	service, err := auth.LoadTokens(p.ServiceTokenPath())
	if err != nil {
		return err
	}
	claims, err := deviceClaims(p, service)
	if err != nil {
		return err
	}
	m, err := monolith.New(monolith.Config{
		Pipeline: p, Site: site, Client: cl, Workers: *workers, MaxBatch: *maxBatch, Registerer: wrapped, Logger: log, Claims: claims,
		Load: func(i int) (*inference.Session, error) {
			return inference.NewSession(p, i, inference.SessionOptions{IntraOpThreads: p.Tiers[i].Inference.IntraOpThreads})
		},
	})
	if err != nil {
		return err
	}
	defer m.Close()
	var ready atomic.Bool
	names := make([]string, len(p.Tiers))
	for i, t := range p.Tiers {
		names[i] = t.Name
	}
	results := p.ResultsTopic()
	if topic, route := funnel.Destination(p, site, ""); route != nil {
		results = fmt.Sprintf("%s (for %s on site %q)", topic, p.ResultsTopic(), p.ResultsSite().Name)
	}
	fmt.Fprintf(stdout, "monolith: consuming %s (group %s), tiers %s in one process with %d workers, results to %s, bad records to %s; metrics on http://%s/metrics\n",
		p.InputTopic(p.Tiers[0].Name), monolith.Group(p), strings.Join(names, " → "), *workers, results, p.DLQTopic(p.Tiers[0].Name), ln.Addr())
	ready.Store(true)
	err = withAdmin(ctx, ln, adminMux(reg, ready.Load), func(ctx context.Context) error {
		defer ready.Store(false)
		return m.Run(ctx)
	})
	log.Info("monolith stopped")
	return err
}

// tiersSite is the one site every tier of p is placed on; tiers on
// several sites are an error naming each tier's site.
func tiersSite(p *pipeline.Pipeline) (string, error) {
	var where []string
	sites := map[string]bool{}
	site := ""
	for _, t := range p.Tiers {
		s := p.SiteOf(t.Name).Name
		if site == "" {
			site = s
		}
		sites[s] = true
		where = append(where, fmt.Sprintf("%s on %s", t.Name, s))
	}
	if len(sites) > 1 {
		last := p.SiteOf(p.Tiers[len(p.Tiers)-1].Name).Name
		return "", fmt.Errorf("%w: the monolith runs every tier on one site, and pipeline %q places them on %d (%s): "+
			"--tiers-on SITE places them all on SITE (the cloud-only baseline: --tiers-on %s)",
			errUsage, p.Name, len(sites), strings.Join(where, ", "), last)
	}
	return site, nil
}
