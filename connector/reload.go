package connector

import (
	"fmt"

	"github.com/ddnn-continuum/ddnn/internal/command"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
)

// liveSetting says whether the connector applies a change of the
// connector setting at path in place: batching, attempts, backoff and the
// request timeout, read at each use. in_flight_per_replica sizes the
// replica pool and its connections, max_pending_records the offset window
// the partitions share: both need a restart.
func liveSetting(path string) bool {
	switch path {
	case "connector.max_batch", "connector.max_wait", "connector.max_attempts",
		"connector.backoff", "connector.max_backoff", "connector.request_timeout":
		return true
	}
	return false
}

// Reload applies p's settings of this connector (its tier's connector
// section; an uplink's, see UplinkSettings) that can change live, from the
// next batch, call or retry on, and a tier's canary (reloadCanary), and
// logs them with what else of the section changed and was ignored because
// it needs a restart. When the
// tier is gone, or max_batch is over the inference.max_batch the running
// replicas take (that needs a rollout first), nothing changes and the
// error says why.
func (c *Connector) Reload(p *pipeline.Pipeline) error {
	c.reloadMu.Lock()
	defer c.reloadMu.Unlock()
	var next pipeline.Connector
	var canary []pipeline.Difference
	if l := c.cfg.Link; l != nil {
		next = UplinkSettings(p, l.To)
	} else {
		t, _, err := p.Tier(c.cfg.Tier)
		if err != nil {
			return err
		}
		next = t.Connector
		running, _, err := c.cfg.Pipeline.Tier(c.cfg.Tier)
		if err != nil {
			return err
		}
		if limit := running.Inference.MaxBatch; next.MaxBatch > limit {
			return fmt.Errorf("%s: connector.max_batch %d is over the inference.max_batch %d the running replicas take: roll the replicas out first",
				c.name, next.MaxBatch, limit)
		}
		canary = c.reloadCanary(t)
	}
	cur := *c.live.Load()
	applied, ignored := canary, []pipeline.Difference(nil)
	for _, ch := range pipeline.Diff("connector", cur, next) {
		if liveSetting(ch.Path) {
			applied = append(applied, ch)
		} else {
			ignored = append(ignored, ch)
		}
	}
	live := cur
	live.MaxBatch, live.MaxWait, live.MaxAttempts = next.MaxBatch, next.MaxWait, next.MaxAttempts
	live.Backoff, live.MaxBackoff, live.RequestTimeout = next.Backoff, next.MaxBackoff, next.RequestTimeout
	c.live.Store(&live)
	command.LogChanges(c.log, applied, ignored, "needs a restart of the connector")
	return nil
}
