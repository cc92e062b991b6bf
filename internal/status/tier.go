package status

import (
	"context"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/ddnn-continuum/ddnn/internal/pipeline"
)

// The metrics a tier's and a link's state is read from (docs/streaming.md
// lists them): a connector's carry label tier, an uplink's from and to.
const (
	mFetched     = "ddnn_connector_fetched_records_total"
	mDecisions   = "ddnn_connector_decision_records_total"
	mInvocation  = "ddnn_connector_invocation_duration_seconds"
	mDown        = "ddnn_connector_tier_down"
	mDownSince   = "ddnn_connector_tier_down_since_seconds"
	mExits       = "ddnn_inference_exits_total"
	mModel       = "ddnn_inference_model_info"
	mForwards    = "ddnn_inference_forwards_total"
	mScaler      = "ddnn_scaler_replicas"
	mLinkRecords = "ddnn_link_messages_total"
)

// tier puts together what was read of t, and says what is wrong with it.
func (r *siteReads) tier(ctx context.Context, t *pipeline.Tier, o Options) (Tier, []string) {
	p := r.view.Pipeline
	l := labels{"tier": t.Name}
	tier := Tier{
		Name: t.Name, Runtime: t.Replicas.Runtime, Model: modelOf(p, t),
		MinReplicas: t.Replicas.Min, MaxReplicas: t.Replicas.Max, DesiredReplicas: t.Replicas.Min,
	}
	var problems []string
	say := func(format string, args ...any) {
		problems = append(problems, fmt.Sprintf("tier %s: ", t.Name)+fmt.Sprintf(format, args...))
	}
	if d, ok := r.after.max(mScaler, labels{"tier": t.Name, "state": "desired"}); ok {
		tier.DesiredReplicas = int(d)
	}
	urls, listed := r.replicas[t.Name]
	ready, counted := r.after.max(mScaler, labels{"tier": t.Name, "state": "ready"})
	switch {
	case listed:
		tier.ReadyReplicas = len(urls)
	case counted:
		tier.ReadyReplicas = int(ready)
	}

	if q, ok := r.kafka.tiers[t.Name]; ok {
		tier.Lag = q.lag
		if q.lagErr != nil {
			say("lag of %s not read: %s", p.InputTopic(t.Name), errText(q.lagErr))
		}
		tier.DeadLetters, tier.DeadLettersLastMinute = q.dead.Total, q.dead.Since
		if q.deadErr != nil {
			say("dead letters of %s not read: %s", q.dlqTopic, errText(q.deadErr))
		}
	}

	tier.Serving = r.after.labelValues(mModel, l, "model")

	connector := r.after.has(mFetched, l)
	if connector {
		tier.InRate = r.rate(mFetched, l)
		tier.OutRate = r.rate(mDecisions, l)
		d := r.after.histogram(mInvocation, l).since(r.before.histogram(mInvocation, l))
		tier.P50Seconds, tier.P99Seconds = d.quantile(0.5), d.quantile(0.99)
		if down, _ := r.after.max(mDown, l); down == 1 {
			tier.Down = true
			tier.DownSince = unixTime(r.after.minPositive(mDownSince, l))
		}
	} else {
		say("no connector metrics on admin %s (is its connector running? for a connector run apart, give its --admin to ddnn status --admin %s=ADDR)",
			strings.Join(r.admins, ","), r.view.Name)
	}
	exits, forwards := r.after.sum(mExits, l)
	fwd, _ := r.after.sum(mForwards, l)
	if !forwards && listed {
		// Replicas whose metrics ddnn up does not gather (docker,
		// kubernetes, or a scaler run apart): read each one.
		exits, fwd = replicaDecisions(ctx, o, urls, t.Name)
		forwards = exits+fwd > 0
	}
	if forwards && exits+fwd > 0 {
		ratio := exits / (exits + fwd)
		tier.ExitRatio = &ratio
	}

	tier.Canary = r.canary(t)
	tier.State = tierState(tier, connector, o)
	switch tier.State {
	case StateDown:
		say("down%s: every replica fails its calls; %s waiting", sinceText(tier.DownSince), records(tier.Lag))
	case StateDeadLettering:
		say("dead-lettering: %d dead letters in the last minute (%d in %s)", tier.DeadLettersLastMinute, tier.DeadLetters, p.DLQTopic(t.Name))
	case StateLagging:
		say("lagging: %s behind, putting out %.1f/s", records(tier.Lag), tier.OutRate)
	}
	if (listed || counted) && tier.ReadyReplicas == 0 && tier.DesiredReplicas > 0 {
		say("no replica ready of %d desired", tier.DesiredReplicas)
	}
	return tier, problems
}

// tierState sums a tier up: unknown without its connector's metrics, then
// down, dead-lettering (a dead letter in the last minute), lagging (a
// lag of at least o.MinLaggingRecords that its out rate would take longer
// than o.LaggingAfter to clear), else ok.
func tierState(t Tier, connector bool, o Options) string {
	switch {
	case !connector:
		return StateUnknown
	case t.Down:
		return StateDown
	case t.DeadLettersLastMinute > 0:
		return StateDeadLettering
	case t.Lag >= o.MinLaggingRecords && float64(t.Lag) > t.OutRate*o.LaggingAfter.Seconds():
		return StateLagging
	}
	return StateOK
}

// replicaDecisions sums the exits and forwards the replicas at urls
// counted, reading each one's /metrics (the inference server's, open).
func replicaDecisions(ctx context.Context, o Options, urls []string, tier string) (exits, forwards float64) {
	rctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	set, _ := scrape(rctx, o.Client, urls)
	l := labels{"tier": tier}
	exits, _ = set.sum(mExits, l)
	forwards, _ = set.sum(mForwards, l)
	return exits, forwards
}

// uplink puts together what was read of the link l: down when its uplink
// says so, or when it holds a backlog and delivered nothing between the
// two reads (a link that stalls without failing: a cut line).
func (r *siteReads) uplink(l pipeline.Link) (Uplink, []string) {
	p := r.view.Pipeline
	ls := labels{"from": l.From, "to": l.To}
	up := Uplink{To: l.To}
	var problems []string
	say := func(format string, args ...any) {
		problems = append(problems, fmt.Sprintf("link %s: ", l)+fmt.Sprintf(format, args...))
	}
	q, read := r.kafka.uplinks[l.To]
	if read {
		up.Backlog = q.lag
		up.DeadLetters = q.dead.Total
		if q.lagErr != nil {
			say("backlog of %s not read: %s", p.UplinkTopic(l.To), errText(q.lagErr))
		}
	}
	if !r.after.has(mFetched, ls) {
		up.Error = fmt.Sprintf("no uplink metrics on admin %s (is its uplink running? for an uplink run apart, give its --admin to ddnn status --admin %s=ADDR)",
			strings.Join(r.admins, ","), l.From)
		say("%s", up.Error)
		return up, problems
	}
	up.Rate = r.rate(mLinkRecords, ls)
	down, _ := r.after.max(mDown, ls)
	switch {
	case down == 1:
		up.DownSince = unixTime(r.after.minPositive(mDownSince, ls))
		up.Error = fmt.Sprintf("the funnel of site %s does not take what the uplink sends (calls failing)", l.To)
	case up.Backlog > 0 && up.Rate == 0:
		up.Error = fmt.Sprintf("%s waiting and none delivered to site %s in the last %s", records(up.Backlog), l.To, r.elapsed.Round(100*time.Millisecond))
	default:
		up.Up = true
		return up, problems
	}
	say("down%s: %s", sinceText(up.DownSince), up.Error)
	return up, problems
}

// unixTime is the time a Unix-seconds gauge holds, to the millisecond (a
// float64 holds no more exactly), nil without one.
func unixTime(secs float64, ok bool) *time.Time {
	if !ok || secs <= 0 {
		return nil
	}
	t := time.UnixMilli(int64(math.Round(secs * 1e3))).UTC()
	return &t
}

// sinceText is " since T (for D)", or "" without a time.
func sinceText(t *time.Time) string {
	if t == nil {
		return ""
	}
	return fmt.Sprintf(" since %s (for %s)", t.Format(time.RFC3339), time.Since(*t).Round(time.Second))
}

// records is "1 record" or "N records".
func records(n int64) string {
	if n == 1 {
		return "1 record"
	}
	return fmt.Sprintf("%d records", n)
}
