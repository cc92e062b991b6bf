package up

import "github.com/ddnn-continuum/ddnn/internal/runtime"

// OnSiteStarted makes Run call f with each site that started and its
// tiers' runtimes, until the test ends.
func OnSiteStarted(t interface{ Cleanup(func()) }, f func(site string, runtime func(tier string) runtime.Runtime)) {
	siteStarted = f
	t.Cleanup(func() { siteStarted = nil })
}
