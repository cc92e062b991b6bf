package runtime

import "context"

// Replacer is a Runtime that can replace its replicas with ones of a new
// Spec without refusing or losing a call: a rolling replacement.
type Replacer interface {
	Runtime
	// Replace starts as many replicas of spec as are live, waits until
	// each is ready, then lists them in place of the old ones at once (so
	// connectors move their traffic) and drains and stops the old ones.
	// Replicas it starts from then on run spec. When a new replica is not
	// ready in time, or ctx ends first, it stops the new ones, keeps the
	// old ones and the old spec, and returns why. Scale calls wait for a
	// Replace, so a tier never runs two specs at once but for the drain.
	Replace(ctx context.Context, spec Spec) error
}

// BesideReplacer is a Replacer that can keep the old replicas serving
// beside the new ones after a replacement, until told to retire them.
type BesideReplacer interface {
	Replacer
	// ReplaceBeside replaces as Replace does, but the old replicas stay
	// listed beside the new ones (neither counted nor scaled) until the
	// Beside it returns retires them, or undoes the replacement.
	ReplaceBeside(ctx context.Context, spec Spec) (Beside, error)
}

// Beside ends a ReplaceBeside. Each returns once the replicas it drains
// are stopped; call one of them once.
type Beside struct {
	// Retire drains and stops the old replicas.
	Retire func()
	// Undo drains and stops the new replicas instead, and makes the old
	// ones and their spec current again.
	Undo func()
}
