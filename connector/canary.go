package connector

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ddnn-continuum/ddnn/internal/httpapi"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
)

// Variants of a tier's messages while it runs a canary (tiers[].canary):
// the current model's, or the candidate's. They are the values of the
// variant label of the canary metrics.
const (
	variantCurrent = "current"
	variantCanary  = "canary"
)

// canary sends a share of a tier's messages to the replicas of its
// candidate model instead of its current ones: a message goes to the
// candidate when the hash of its id falls under canary.share
// (takesCanary), so the share is exact over many messages and a message
// fetched again goes to the same variant. Batches never mix variants
// (item.batchKey). While the candidate has no ready replica, or fails a
// call, its messages go to the current replicas, counted as fallbacks.
// A sample of the candidate's batches is also sent to the current
// replicas and the answers compared (shadow.go).
type canary struct {
	// settings is the tier's canary section, nil while it has none; a
	// reload swaps it (Reload).
	settings atomic.Pointer[pipeline.Canary]
	// pool holds the candidate's replicas, read from listURL.
	pool    *pool
	listURL string
	// followMu serialises the reads of listURL (the follow loop's and a
	// reload's); listErr is the last error of one, logged when it changes
	// (a replica manager that serves no canary list answers 404 to each).
	followMu sync.Mutex
	listErr  string
	m        *canaryMetrics
	shadow   shadow
}

// newCanary is the canary router of tier t, whose replica list is at
// replicasURL (the candidate's list is beside it:
// httpapi.CanaryReplicasPath), with in-flight calls per replica limit.
func newCanary(t *pipeline.Tier, replicasURL string, limit int, reg prometheus.Registerer) *canary {
	k := &canary{pool: newPool(nil, limit), m: newCanaryMetrics(reg)}
	if replicasURL != "" {
		k.listURL = strings.TrimSuffix(replicasURL, httpapi.ReplicasPath(t.Name)) + httpapi.CanaryReplicasPath(t.Name)
	}
	k.set(t.Canary)
	return k
}

// serving says whether the tier runs a canary with a replica listed: one
// a call may be sent to.
func (k *canary) serving() bool {
	return k != nil && k.settings.Load() != nil && k.pool.size() > 0
}

// set makes c the canary settings from the next message on (nil: none).
func (k *canary) set(c *pipeline.Canary) {
	if c == nil {
		k.settings.Store(nil)
		return
	}
	cp := *c
	k.settings.Store(&cp)
}

// takesCanary says whether the message with id goes to a candidate
// taking share of the messages: the id's hash, read as a fraction of
// 2^64, is under share. The hash is FNV-1a mixed by MurmurHash3's
// finalizer (FNV-1a alone leaves ids that differ in their last
// characters close together in the high bits), so that ids spread
// evenly and the part of many messages it picks is share. It is the
// same in every process: a message fetched again goes to the same
// variant.
func takesCanary(id string, share float64) bool {
	// FNV-1a over the id's bytes, without a hash.Hash or a []byte copy:
	// it runs for every message a tier with a canary fetches.
	x := uint64(14695981039346656037)
	for i := 0; i < len(id); i++ {
		x ^= uint64(id[i])
		x *= 1099511628211
	}
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return float64(x>>11)/(1<<53) < share
}

// variantOf is the variant that serves the message with id: "" while the
// tier runs no canary (nothing counted), else current or canary. A
// message for a candidate with no ready replica goes to the current
// model and is counted as a fallback.
func (c *Connector) variantOf(id string) string {
	k := c.canary
	if k == nil {
		return ""
	}
	s := k.settings.Load()
	switch {
	case s == nil:
		return ""
	case !takesCanary(id, s.Share):
		return variantCurrent
	case k.pool.size() == 0:
		k.m.fallbacks.Inc()
		return variantCurrent
	}
	return variantCanary
}

// batchKey groups the items that may share a call: those of one route
// and one variant.
func (it *item) batchKey() string {
	if it.variant == variantCanary {
		return it.route + "\x00" + variantCanary
	}
	return it.route
}

// poolFor is the pool of the replicas that serve variant.
func (c *Connector) poolFor(variant string) *pool {
	if variant == variantCanary {
		return c.canary.pool
	}
	return c.pool
}

// followCanary reads the candidate's replica list once, while the tier
// runs a canary, and updates its pool; without a canary the pool is
// emptied (its replicas finish their calls).
func (c *Connector) followCanary(ctx context.Context) {
	k := c.canary
	if k == nil || k.listURL == "" {
		return
	}
	k.followMu.Lock()
	defer k.followMu.Unlock()
	var urls []string
	if k.settings.Load() != nil {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		reps, err := httpapi.ReadReplicas(ctx, c.http, k.listURL)
		if err != nil {
			if err.Error() != k.listErr {
				k.listErr = err.Error()
				c.log.Warn("canary replica list not read: the canary's share goes to the current replicas", "err", err)
			}
			return
		}
		k.listErr = ""
		for _, r := range reps {
			urls = append(urls, r.URL)
		}
	}
	if added, removed := k.pool.update(urls); added+removed > 0 {
		c.log.Info("canary replica set changed", "replicas", k.pool.size(), "added", added, "removed", removed)
	}
}

// countCall counts a call of variant (none: "") that took took seconds:
// its service time, and an error unless ok.
func (k *canary) countCall(variant string, took float64, ok bool) {
	if k == nil || variant == "" {
		return
	}
	k.m.serviceSeconds.WithLabelValues(variant).Observe(took)
	if !ok {
		k.m.errors.WithLabelValues(variant).Inc()
	}
}

// countDecisions counts the decisions ss of a batch of variant.
func (k *canary) countDecisions(variant string, ss []settled) {
	if k == nil || variant == "" {
		return
	}
	exits := 0
	for _, s := range ss {
		if s.exit {
			exits++
		}
	}
	k.m.decisions.WithLabelValues(variant, "exit").Add(float64(exits))
	k.m.decisions.WithLabelValues(variant, "forward").Add(float64(len(ss) - exits))
}

// canaryMetrics compare a tier's candidate with its current model.
type canaryMetrics struct {
	decisions      *prometheus.CounterVec
	serviceSeconds *prometheus.HistogramVec
	errors         *prometheus.CounterVec
	fallbacks      prometheus.Counter
	shadowMessages *prometheus.CounterVec
	shadowBatches  *prometheus.CounterVec
}

func newCanaryMetrics(reg prometheus.Registerer) *canaryMetrics {
	m := &canaryMetrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ddnn_connector_canary_decisions_total",
			Help: "Decisions of the tier's messages while it runs a canary, by variant (current, canary) and decision (exit, forward).",
		}, []string{"variant", "decision"}),
		serviceSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "ddnn_connector_canary_service_seconds",
			Help:    "Time of one call of a replica while the tier runs a canary, by variant (current, canary).",
			Buckets: prometheus.ExponentialBuckets(100e-6, 2.5, 14),
		}, []string{"variant"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ddnn_connector_canary_errors_total",
			Help: "Calls of a replica that failed or were refused while the tier runs a canary, by variant (current, canary).",
		}, []string{"variant"}),
		fallbacks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ddnn_connector_canary_fallback_records_total",
			Help: "Messages of the canary's share sent to the current model: the candidate had no ready replica, or failed their call.",
		}),
		shadowMessages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ddnn_connector_canary_shadow_records_total",
			Help: "Canary messages also scored by the current model, by outcome: agreed (same exit decision, and same class when both exit) or disagreed.",
		}, []string{"outcome"}),
		shadowBatches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ddnn_connector_canary_shadow_batches_total",
			Help: "Canary batches sampled for shadow scoring by the current model, by outcome: compared, dropped (shadow calls at their bound, or no current replica free), failed.",
		}, []string{"outcome"}),
	}
	reg.MustRegister(m.decisions, m.serviceSeconds, m.errors, m.fallbacks, m.shadowMessages, m.shadowBatches)
	for _, v := range []string{variantCurrent, variantCanary} {
		m.errors.WithLabelValues(v)
		m.serviceSeconds.WithLabelValues(v)
	}
	for _, o := range []string{"agreed", "disagreed"} {
		m.shadowMessages.WithLabelValues(o)
	}
	return m
}

// tierRegisterer is where the metrics of tier's connector go: the
// configured registerer (or one that exports nothing), with the tier label.
func (c *Connector) tierRegisterer(tier string) prometheus.Registerer {
	reg := c.cfg.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry() // counted, not exported
	}
	return prometheus.WrapRegistererWith(prometheus.Labels{"tier": tier}, reg)
}

// reloadCanary makes t's canary section the one the connector routes by
// from the next message on, and returns what changed: a canary added,
// its share or shadow ratio changed, or removed (its messages go to the
// current replicas from then on). The candidate's replica list is read
// at once.
func (c *Connector) reloadCanary(t *pipeline.Tier) []pipeline.Difference {
	k := c.canary
	if k == nil {
		if t.Canary != nil {
			c.log.Warn("reload: canary ignored: the connector reads no replica list to find its replicas", "tier", t.Name)
		}
		return nil
	}
	old := k.settings.Load()
	k.set(t.Canary)
	c.followCanary(context.Background())
	return pipeline.Diff("canary", old, t.Canary)
}

// queued counts the items of queue.
func queued(queue [][]item) int {
	n := 0
	for _, b := range queue {
		n += len(b)
	}
	return n
}
