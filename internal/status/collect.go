package status

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/ddnn-continuum/ddnn/internal/onnx"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
)

// Options say what Collect reads and how long it waits.
type Options struct {
	// Site limits the snapshot to one site; "" reads every site.
	Site string
	// Admin are, by site name, the admin addresses (host:port or URL)
	// whose /metrics and replica lists Collect reads: roles run apart
	// (each connector's, uplink's and the scaler's --admin). A site not
	// named reads its admin.listen, where ddnn up (or the monolith)
	// serves every part's metrics.
	Admin map[string][]string
	// Client makes every HTTP request; nil is a plain client with Timeout.
	// No route Collect reads needs the service token.
	Client *http.Client
	// Timeout bounds each read (an HTTP request, a Kafka request);
	// default 3 s.
	Timeout time.Duration
	// RateWindow is the time between the two reads of the metrics that
	// rates and service times are computed from; default 1 s.
	RateWindow time.Duration
	// LaggingAfter: a tier is lagging when its lag (at least
	// MinLaggingRecords) would take longer than this to clear at the
	// rate it puts records out; default 10 s.
	LaggingAfter time.Duration
	// MinLaggingRecords is the lag below which a tier is never lagging
	// (records in flight); default 100.
	MinLaggingRecords int64
}

func (o *Options) setDefaults() {
	if o.Timeout <= 0 {
		o.Timeout = 3 * time.Second
	}
	if o.RateWindow <= 0 {
		o.RateWindow = time.Second
	}
	if o.LaggingAfter <= 0 {
		o.LaggingAfter = 10 * time.Second
	}
	if o.MinLaggingRecords <= 0 {
		o.MinLaggingRecords = 100
	}
	if o.Client == nil {
		o.Client = &http.Client{Timeout: o.Timeout}
	}
}

// Collect reads the state of p's sites (or o.Site's) from their Kafkas,
// funnels and admin addresses, all sites at once; it takes about
// o.RateWindow plus the slowest read. What does not answer is in the
// snapshot (the endpoint down, the tier unknown, a line in Problems), not
// an error: the error is for an unknown site or an ended ctx.
func Collect(ctx context.Context, p *pipeline.Pipeline, o Options) (Snapshot, error) {
	return collect(ctx, p, o, nil)
}

// Reader reads a pipeline's snapshots one after another, as a page that
// samples them does. A read whose site's metrics were read at most
// MaxGap before takes that read as the first of its two (the rates are
// over the time since) and reads the metrics once, at once, instead of
// twice RateWindow apart: a sample costs one scrape of each admin
// address, not two, and no wait.
type Reader struct {
	p  *pipeline.Pipeline
	o  Options
	mu sync.Mutex // one read at a time
	// last is each site's newest metrics read.
	last map[string]scraped
}

// MaxGap is the oldest a site's previous metrics read may be for a
// Reader to compute rates from it.
const MaxGap = 10 * time.Second

// scraped is a read of a site's admin addresses' metrics.
type scraped struct {
	set  metricSet
	errs map[string]error
	at   time.Time
}

// NewReader reads p's snapshots with o (see Collect).
func NewReader(p *pipeline.Pipeline, o Options) *Reader {
	return &Reader{p: p, o: o, last: map[string]scraped{}}
}

// Read is Collect, the rates taken since the Reader's previous read.
func (r *Reader) Read(ctx context.Context) (Snapshot, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return collect(ctx, r.p, r.o, r.last)
}

// collect is Collect; with last, it takes each site's previous metrics
// read from it when recent enough and leaves its newest one there.
func collect(ctx context.Context, p *pipeline.Pipeline, o Options, last map[string]scraped) (Snapshot, error) {
	o.setDefaults()
	var views []*pipeline.SiteView
	for _, s := range p.Sites() {
		if o.Site != "" && s.Name != o.Site {
			continue
		}
		v, err := p.OnSite(s.Name)
		if err != nil {
			return Snapshot{}, err
		}
		views = append(views, v)
	}
	if len(views) == 0 {
		_, err := p.Site(o.Site) // names the known sites
		return Snapshot{}, err
	}
	for name := range o.Admin {
		if _, err := p.Site(name); err != nil {
			return Snapshot{}, fmt.Errorf("admin addresses: %w", err)
		}
	}
	now := time.Now().UTC()
	snap := Snapshot{Pipeline: p.Name, Time: now, Sites: make([]Site, len(views)), Problems: []string{}}
	problems := make([][]string, len(views))
	newest := make([]scraped, len(views))
	var wg sync.WaitGroup
	for i, v := range views {
		var prev *scraped
		if l, ok := last[v.Name]; ok && time.Since(l.at) <= MaxGap && len(l.errs) == 0 {
			prev = &l
		}
		wg.Go(func() { snap.Sites[i], problems[i], newest[i] = collectSite(ctx, v, o, now, prev) })
	}
	wg.Wait()
	if last != nil {
		for i, v := range views {
			last[v.Name] = newest[i]
		}
	}
	if err := ctx.Err(); err != nil {
		return Snapshot{}, err
	}
	for _, ps := range problems {
		snap.Problems = append(snap.Problems, ps...)
	}
	return snap, nil
}

// siteReads are the reads of one site, before they are put together.
type siteReads struct {
	view    *pipeline.SiteView
	tiers   []*pipeline.Tier
	links   []pipeline.Link
	admins  []string
	before  metricSet // the first read of the metrics
	after   metricSet // the second, RateWindow later
	elapsed time.Duration
	kafka   siteKafka
	// replicas are the ready replicas' URLs by tier, where a list was read.
	replicas map[string][]string
}

// collectSite reads one site: its metrics twice, RateWindow apart (or
// once, after prev when it is given), and its Kafka, funnel and replica
// lists in between; it also returns its newest metrics read.
func collectSite(ctx context.Context, v *pipeline.SiteView, o Options, now time.Time, prev *scraped) (Site, []string, scraped) {
	r := siteReads{view: v, admins: o.Admin[v.Name], replicas: map[string][]string{}}
	if len(r.admins) == 0 {
		r.admins = []string{v.Admin.Listen}
	}
	var tierNames []string
	for i := range v.Pipeline.Tiers {
		if t := &v.Pipeline.Tiers[i]; v.Pipeline.SiteOf(t.Name).Name == v.Name {
			r.tiers = append(r.tiers, t)
			tierNames = append(tierNames, t.Name)
		}
	}
	for _, l := range v.Pipeline.Links() {
		if l.From == v.Name {
			r.links = append(r.links, l)
		}
	}
	var before scraped
	if prev != nil {
		before = *prev
	} else {
		rctx, cancel := context.WithTimeout(ctx, o.Timeout)
		before.at = time.Now()
		before.set, before.errs = scrape(rctx, o.Client, r.admins)
		cancel()
	}
	r.before = before.set

	site := Site{Name: v.Name, Tiers: []Tier{}, Uplinks: []Uplink{}}
	var wg sync.WaitGroup
	wg.Go(func() { r.kafka = readKafka(ctx, v, tierNames, r.links, o.Timeout, now) })
	wg.Go(func() {
		fctx, cancel := context.WithTimeout(ctx, o.Timeout)
		defer cancel()
		site.Funnel = probeFunnel(fctx, o.Client, v.Funnel.URL)
	})
	wg.Go(func() {
		lctx, cancel := context.WithTimeout(ctx, o.Timeout)
		defer cancel()
		for _, t := range r.tiers {
			if reps, ok := readyReplicas(lctx, o.Client, r.admins, t.Name); ok {
				urls := []string{}
				for _, rep := range reps {
					urls = append(urls, rep.URL)
				}
				r.replicas[t.Name] = urls
			}
		}
	})
	wg.Wait()
	r.after, r.elapsed = before.set, 0
	after := before
	if len(before.errs) < len(r.admins) { // something to compute rates from
		wait := time.NewTimer(time.Until(before.at.Add(o.RateWindow)))
		select {
		case <-wait.C:
		case <-ctx.Done():
			wait.Stop()
			return site, nil, before
		}
		rctx, cancel := context.WithTimeout(ctx, o.Timeout)
		after.at = time.Now()
		after.set, after.errs = scrape(rctx, o.Client, r.admins)
		cancel()
		r.after, r.elapsed = after.set, after.at.Sub(before.at)
	}
	errs := after.errs
	site.Kafka = r.kafka.endpoint
	site.Admin = adminEndpoint(r.admins, errs)

	var problems []string
	say := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	if !site.Kafka.Up {
		say("site %s: kafka %s did not answer: %s", v.Name, site.Kafka.Address, site.Kafka.Error)
	}
	if !site.Funnel.Up {
		say("site %s: funnel %s did not answer: %s", v.Name, site.Funnel.Address, site.Funnel.Error)
	}
	for _, a := range r.admins {
		if err := errs[a]; err != nil {
			say("site %s: admin %s did not answer: %s", v.Name, a, errText(err))
		}
	}
	for _, t := range r.tiers {
		tier, ps := r.tier(ctx, t, o)
		site.Tiers = append(site.Tiers, tier)
		problems = append(problems, ps...)
	}
	for _, l := range r.links {
		up, ps := r.uplink(l)
		site.Uplinks = append(site.Uplinks, up)
		problems = append(problems, ps...)
	}
	return site, problems, after
}

// adminEndpoint sums the admin addresses up: all of them, up when every
// one answered.
func adminEndpoint(addrs []string, errs map[string]error) Endpoint {
	e := Endpoint{Address: strings.Join(addrs, ","), Up: len(errs) == 0}
	var why []string
	for _, a := range addrs {
		if err := errs[a]; err != nil && len(addrs) == 1 {
			why = append(why, errText(err))
		} else if err != nil {
			why = append(why, a+": "+errText(err))
		}
	}
	e.Error = strings.Join(why, "; ")
	return e
}

// rate is the per-second increase of name's series with l's labels
// between the two reads; a counter that went down (a process restarted)
// counts from 0.
func (r *siteReads) rate(name string, l labels) float64 {
	now, ok := r.after.sum(name, l)
	if !ok || r.elapsed <= 0 {
		return 0
	}
	was, _ := r.before.sum(name, l)
	if now < was {
		was = 0
	}
	return (now - was) / r.elapsed.Seconds()
}

// modelOf is the tier's model file and the start of its sha256, read
// where status runs.
func modelOf(p *pipeline.Pipeline, t *pipeline.Tier) Model {
	m := Model{File: p.ModelPath(t)}
	m.SHA256, _ = onnx.FileSHA256(m.File) // "" when status cannot read it
	return m
}
