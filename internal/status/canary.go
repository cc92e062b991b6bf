package status

import (
	"fmt"
	"io"
	"strconv"

	"github.com/ddnn-continuum/ddnn/internal/pipeline"
)

// The metrics a tier's canary is compared by (connector/canary.go): the
// connector's, with label variant (current or canary).
const (
	mCanaryDecisions = "ddnn_connector_canary_decisions_total"
	mCanaryService   = "ddnn_connector_canary_service_seconds"
	mCanaryErrors    = "ddnn_connector_canary_errors_total"
	mCanaryFallbacks = "ddnn_connector_canary_fallback_records_total"
	mCanaryShadow    = "ddnn_connector_canary_shadow_records_total"
	mCanaryBatches   = "ddnn_connector_canary_shadow_batches_total"
)

// Canary compares a tier's candidate model (tiers[].canary) with its
// current one, from what the tier's connector counted since it started
// routing to the canary.
type Canary struct {
	Model   Model  `json:"model"`
	Version string `json:"version,omitempty"`
	// Share is the part of the messages the canary is set to take;
	// ShareSeen the part of the messages decided that it decided (null
	// before any was).
	Share     float64  `json:"share"`
	ShareSeen *float64 `json:"share_seen"`
	Current   Variant  `json:"current"`
	Candidate Variant  `json:"candidate"`
	// Fallbacks are messages of the canary's share the current model
	// decided: the candidate had no ready replica, or failed their call.
	Fallbacks int64 `json:"fallbacks"`
	// ShadowCompared are canary messages the current model scored too,
	// ShadowAgreed those whose decisions agreed (the same exit decision,
	// and the same class when both exit); Agreement is their ratio, null
	// before any was compared. ShadowDropped are sampled canary batches
	// not compared: the shadow calls were at their bound, or no current
	// replica was free, or the call failed.
	ShadowCompared int64    `json:"shadow_compared"`
	ShadowAgreed   int64    `json:"shadow_agreed"`
	Agreement      *float64 `json:"agreement"`
	ShadowDropped  int64    `json:"shadow_dropped"`
}

// Variant is what one of a tier's two models did while it runs a canary.
type Variant struct {
	// Decisions are the messages it decided; ExitRatio the part of them
	// that exited, null before any.
	Decisions int64    `json:"decisions"`
	ExitRatio *float64 `json:"exit_ratio"`
	// P50 and P99 service time of a call, seconds, since the canary
	// started; null without any call.
	P50Seconds *float64 `json:"p50_seconds"`
	P99Seconds *float64 `json:"p99_seconds"`
	// Errors are calls that failed or were refused.
	Errors int64 `json:"errors"`
}

// canary compares t's canary with its current model, from the metrics
// read last; nil when the tier runs none.
func (r *siteReads) canary(t *pipeline.Tier) *Canary {
	c := t.Canary
	if c == nil {
		return nil
	}
	p := r.view.Pipeline
	k := &Canary{Model: modelOf(p, &pipeline.Tier{Model: c.Model}), Version: c.Version, Share: c.Share}
	l := labels{"tier": t.Name}
	k.Current = r.variant(t.Name, "current")
	k.Candidate = r.variant(t.Name, "canary")
	if n := k.Current.Decisions + k.Candidate.Decisions; n > 0 {
		share := float64(k.Candidate.Decisions) / float64(n)
		k.ShareSeen = &share
	}
	k.Fallbacks = int64(sumOr0(r.after.sum(mCanaryFallbacks, l)))
	k.ShadowAgreed = int64(sumOr0(r.after.sum(mCanaryShadow, labels{"tier": t.Name, "outcome": "agreed"})))
	k.ShadowCompared = k.ShadowAgreed + int64(sumOr0(r.after.sum(mCanaryShadow, labels{"tier": t.Name, "outcome": "disagreed"})))
	if k.ShadowCompared > 0 {
		a := float64(k.ShadowAgreed) / float64(k.ShadowCompared)
		k.Agreement = &a
	}
	for _, o := range []string{"dropped", "failed"} {
		k.ShadowDropped += int64(sumOr0(r.after.sum(mCanaryBatches, labels{"tier": t.Name, "outcome": o})))
	}
	return k
}

// variant reads what tier's connector counted of variant.
func (r *siteReads) variant(tier, variant string) Variant {
	l := labels{"tier": tier, "variant": variant}
	exits := sumOr0(r.after.sum(mCanaryDecisions, labels{"tier": tier, "variant": variant, "decision": "exit"}))
	forwards := sumOr0(r.after.sum(mCanaryDecisions, labels{"tier": tier, "variant": variant, "decision": "forward"}))
	v := Variant{Decisions: int64(exits + forwards), Errors: int64(sumOr0(r.after.sum(mCanaryErrors, l)))}
	if exits+forwards > 0 {
		ratio := exits / (exits + forwards)
		v.ExitRatio = &ratio
	}
	h := r.after.histogram(mCanaryService, l)
	v.P50Seconds, v.P99Seconds = h.quantile(0.5), h.quantile(0.99)
	return v
}

// sumOr0 is a sum, 0 without any series.
func sumOr0(v float64, _ bool) float64 { return v }

// printCanaries writes a table comparing the two models of each tier of
// tiers that runs a canary; nothing when none does.
func printCanaries(w io.Writer, tiers []Tier, colour bool) {
	rows := []row{{cells: []string{"CANARY", "MODEL", "SHARE", "SEEN", "DECISIONS", "EXITS", "P50", "P99", "ERRORS", "AGREEMENT", "FALLBACKS"}}}
	for _, t := range tiers {
		k := t.Canary
		if k == nil {
			continue
		}
		candidate := modelText(k.Model)
		if k.Version != "" && k.Model.SHA256 != "" {
			candidate += "@" + k.Version // sha@version, as answers name it
		}
		agreement := "-"
		if k.Agreement != nil {
			agreement = fmt.Sprintf("%s of %d", ratioText(k.Agreement), k.ShadowCompared)
		}
		for _, v := range []struct {
			name, model, share, seen string
			v                        Variant
			agreement, fallbacks     string
		}{
			{t.Name + " current", modelText(t.Model), ratioOf(1 - k.Share), ratioText(complement(k.ShareSeen)), k.Current, "", ""},
			{t.Name + " canary", candidate, ratioOf(k.Share), ratioText(k.ShareSeen), k.Candidate, agreement, strconv.FormatInt(k.Fallbacks, 10)},
		} {
			rows = append(rows, row{cells: []string{v.name, v.model, v.share, v.seen, strconv.FormatInt(v.v.Decisions, 10),
				ratioText(v.v.ExitRatio), secondsText(v.v.P50Seconds), secondsText(v.v.P99Seconds), strconv.FormatInt(v.v.Errors, 10), v.agreement, v.fallbacks}})
		}
	}
	if len(rows) == 1 {
		return
	}
	fmt.Fprintln(w)
	table(w, rows, colour)
}

func ratioOf(r float64) string { return ratioText(&r) }

// complement is 1 - r, nil for nil.
func complement(r *float64) *float64 {
	if r == nil {
		return nil
	}
	c := 1 - *r
	return &c
}
