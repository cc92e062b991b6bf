package apply

import "github.com/ddnn-continuum/ddnn/internal/pipeline"

// liveCanary records a tier's canary (tiers[].canary) as Live: added
// (its replicas start), removed (they drain and stop), or changed: a new
// candidate (model, version) replaces its replicas, a new share or shadow
// ratio is the connector's from its next message. Promoting a candidate
// is setting the tier's model to the candidate's (a rollout) and removing
// the canary. f is the tier's path; oldSHA and newSHA are the candidates'
// model files' sha256: the candidate is known by it, not by its path.
func liveCanary(plan *Plan, f string, o, n *pipeline.Tier, oldSHA, newSHA string) {
	switch {
	case o.Canary == nil && n.Canary == nil:
		return
	case o.Canary == nil || n.Canary == nil:
		plan.Live = append(plan.Live, Change{Path: f + ".canary", Old: pipeline.FormatSetting(o.Canary), New: pipeline.FormatSetting(n.Canary)})
		o.Canary = n.Canary
		return
	}
	oc, nc := *o.Canary, n.Canary // o's copy is set as the plan goes
	o.Canary = &oc
	if oldSHA != newSHA {
		plan.Live = append(plan.Live, Change{Path: f + ".canary.model", Old: "sha256 " + oldSHA, New: "sha256 " + newSHA + " (" + nc.Model + ")"})
	}
	oc.Model = nc.Model
	live(plan, f+".canary.version", &oc.Version, &nc.Version)
	live(plan, f+".canary.share", &oc.Share, &nc.Share)
	live(plan, f+".canary.shadow_ratio", &oc.ShadowRatio, &nc.ShadowRatio)
}
