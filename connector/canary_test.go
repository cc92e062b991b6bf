package connector

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ddnn-continuum/ddnn/internal/httpapi"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/testsupport"
	"github.com/ddnn-continuum/ddnn/internal/wire"
)

// TestTakesCanaryShare: over 10,000 message ids the hash picks the
// canary's share ± 0.02, and always the same ids.
func TestTakesCanaryShare(t *testing.T) {
	for _, share := range []float64{0.02, 0.1, 0.5, 0.9} {
		for _, form := range []string{"dev-%d", "%08x-4f1c-9a2e-%d"} {
			n := 0
			for i := range 10000 {
				id := fmt.Sprintf(form, i, i)
				if !strings.Contains(form, "%08x") {
					id = fmt.Sprintf(form, i)
				}
				if takesCanary(id, share) {
					n++
				}
				if takesCanary(id, share) != takesCanary(id, share) {
					t.Fatalf("id %q: not the same variant twice", id)
				}
			}
			if got := float64(n) / 10000; got < share-0.02 || got > share+0.02 {
				t.Errorf("share %v, ids %q: %v of 10,000 taken", share, form, got)
			}
		}
	}
}

// TestShadowSampled: ratio of the batches are sampled, evenly.
func TestShadowSampled(t *testing.T) {
	for _, tc := range []struct {
		ratio float64
		want  int
	}{{0, 0}, {0.1, 100}, {0.25, 250}, {1, 1000}} {
		got := 0
		for n := uint64(1); n <= 1000; n++ {
			if sampled(n, tc.ratio) {
				got++
			}
		}
		if got != tc.want {
			t.Errorf("ratio %v: %d of 1000 batches sampled, want %d", tc.ratio, got, tc.want)
		}
	}
}

// TestAgreement: the same exit decision agrees, and the same class when
// both exit; answers for other messages are an error.
func TestAgreement(t *testing.T) {
	exit := func(id string, class int) wire.Decision { return wire.Decision{ID: id, Exit: true, Class: class} }
	fwd := func(id string, class int) wire.Decision { return wire.Decision{ID: id, Class: class} }
	canary := []wire.Decision{exit("a", 1), exit("b", 1), fwd("c", 0), fwd("d", 3), exit("e", 2)}
	current := []wire.Decision{exit("a", 1), exit("b", 2), fwd("c", 1), exit("d", 3), fwd("e", 2)}
	agreed, disagreed, err := agreement(canary, current)
	if err != nil || agreed != 2 || disagreed != 3 {
		t.Errorf("agreement = %d, %d, %v; want 2 agreed (a; c: both forward), 3 disagreed", agreed, disagreed, err)
	}
	if _, _, err := agreement(canary[:2], current[:1]); err == nil {
		t.Error("answers of different lengths compared")
	}
	if _, _, err := agreement(canary[:1], current[1:2]); err == nil || !strings.Contains(err.Error(), `"a" from the canary, "b" from the current model`) {
		t.Errorf("answers for other messages: %v", err)
	}
}

// replicaLists serves a tier's replica list and its canary's.
func replicaLists(t *testing.T, tier string, current, canary func() []string) string {
	t.Helper()
	list := func(urls func() []string) http.HandlerFunc {
		return func(w http.ResponseWriter, _ *http.Request) {
			out := []httpapi.ListedReplica{}
			for i, u := range urls() {
				out = append(out, httpapi.ListedReplica{ID: strconv.Itoa(i), URL: u})
			}
			json.NewEncoder(w).Encode(out)
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc(httpapi.ReplicasPattern, list(current))
	mux.HandleFunc(httpapi.CanaryReplicasPattern, list(canary))
	srv := serveOn(t, "127.0.0.1:0", mux)
	return srv.URL + httpapi.ReplicasPath(tier)
}

// exitAs exits every message as class.
func exitAs(class int) func(*wire.Message) wire.Decision {
	return func(*wire.Message) wire.Decision {
		return wire.Decision{Exit: true, Class: class, Label: []string{"a", "b"}[class], Confidence: 1}
	}
}

// TestCanaryTakesItsShare: a tier with a canary sends exactly the
// messages whose id hash falls under the share to the candidate, in
// batches of their own, the rest to the current replica; every canary
// batch is shadow-scored by the current replica too, and the decisions
// compared; nothing falls back, nothing is lost.
func TestCanaryTakesItsShare(t *testing.T) {
	e := setup(t)
	e.p.Tiers[0].Canary = &pipeline.Canary{Model: "e2.onnx", Share: 0.2, ShadowRatio: 1}
	// The candidate says class b for every message whose id ends in 0,
	// else a, as the current model does for all.
	candidate := newReplicaNaming(t, "edge", "0123456789ab@v2", func(m *wire.Message) wire.Decision {
		if strings.HasSuffix(m.ID, "0") {
			return exitAs(1)(m)
		}
		return exitAs(0)(m)
	})
	current := newReplicaNaming(t, "edge", "ba9876543210", exitAs(0))
	url := replicaLists(t, "edge", func() []string { return []string{current.srv.URL} }, func() []string { return []string{candidate.srv.URL} })
	c, err := New(Config{Pipeline: e.p, Tier: "edge", ReplicasURL: url, Registerer: prometheus.NewRegistry(), DrainTimeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	e.run(t, c)
	const n = 2000
	e.produce(t, n, "m")
	testsupport.WaitFor(t, 30*time.Second, "every record committed", func() bool { return e.lag(t) == 0 })

	var wantCanary, wantDisagree int
	cur, cand := current.ids(), candidate.ids()
	for i := range n {
		id := fmt.Sprintf("m%d", i)
		if takesCanary(id, 0.2) {
			wantCanary++
			if strings.HasSuffix(id, "0") {
				wantDisagree++
			}
			if cand[id] != 1 {
				t.Errorf("%s of the canary's share: sent %d times to the candidate", id, cand[id])
			}
			if cur[id] > 1 {
				t.Errorf("%s of the canary's share: sent %d times to the current replica (one shadow call at most)", id, cur[id])
			}
			continue
		}
		if cur[id] != 1 || cand[id] != 0 {
			t.Errorf("%s: sent %d times to the current replica, %d to the candidate; want once to the current", id, cur[id], cand[id])
		}
	}
	if len(cand) != wantCanary {
		t.Errorf("the candidate got %d ids, want %d", len(cand), wantCanary)
	}
	m := c.canary.m
	if got := testutil.ToFloat64(m.decisions.WithLabelValues(variantCanary, "exit")); int(got) != wantCanary {
		t.Errorf("canary exits counted %v, want %d", got, wantCanary)
	}
	if got := testutil.ToFloat64(m.decisions.WithLabelValues(variantCurrent, "exit")); int(got) != n-wantCanary {
		t.Errorf("current exits counted %v, want %d", got, n-wantCanary)
	}
	if got := testutil.ToFloat64(m.fallbacks); got != 0 {
		t.Errorf("%v fallbacks with a ready candidate", got)
	}
	compared := testutil.ToFloat64(m.shadowBatches.WithLabelValues("compared"))
	dropped := testutil.ToFloat64(m.shadowBatches.WithLabelValues("dropped"))
	agreed := testutil.ToFloat64(m.shadowMessages.WithLabelValues("agreed"))
	disagreed := testutil.ToFloat64(m.shadowMessages.WithLabelValues("disagreed"))
	if compared == 0 || agreed == 0 || disagreed == 0 {
		t.Fatalf("shadow: %v batches compared (%v dropped), %v agreed, %v disagreed; want some of each", compared, dropped, agreed, disagreed)
	}
	// Every message the shadow scored twice disagrees exactly when the
	// candidate said b.
	var shadowed, shadowDisagree int
	for id := range cand {
		if cur[id] == 1 {
			shadowed++
			if strings.HasSuffix(id, "0") {
				shadowDisagree++
			}
		}
	}
	if int(agreed+disagreed) != shadowed || int(disagreed) != shadowDisagree {
		t.Errorf("shadow counted %v agreed, %v disagreed; the current replica scored %d canary messages, %d of them class b for the candidate", agreed, disagreed, shadowed, shadowDisagree)
	}
}

// TestCanaryFallsBack: while the candidate has no ready replica, or fails
// its calls, its share goes to the current replica, counted, and nothing
// is lost; a candidate's failures do not mark the tier down.
func TestCanaryFallsBack(t *testing.T) {
	for _, tc := range []struct {
		name   string
		listed bool
	}{{"no candidate replica", false}, {"candidate fails", true}} {
		t.Run(tc.name, func(t *testing.T) {
			e := setup(t)
			e.p.Tiers[0].Canary = &pipeline.Canary{Model: "e2.onnx", Share: 0.3, ShadowRatio: 1}
			candidate := newFakeReplica(t, func([]wire.Message) (int, string) { return http.StatusServiceUnavailable, "model crashed" })
			current := newReplicaNaming(t, "edge", "ba9876543210", exitAs(0))
			canaryList := func() []string {
				if tc.listed {
					return []string{candidate.srv.URL}
				}
				return nil
			}
			url := replicaLists(t, "edge", func() []string { return []string{current.srv.URL} }, canaryList)
			c, err := New(Config{Pipeline: e.p, Tier: "edge", ReplicasURL: url, Registerer: prometheus.NewRegistry(), DrainTimeout: 3 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			e.run(t, c)
			const n = 500
			e.produce(t, n, "m")
			testsupport.WaitFor(t, 30*time.Second, "every record committed", func() bool { return e.lag(t) == 0 })
			share := 0
			for i := range n {
				if takesCanary(fmt.Sprintf("m%d", i), 0.3) {
					share++
				}
			}
			if got := len(current.ids()); got != n {
				t.Errorf("the current replica decided %d of %d messages", got, n)
			}
			if got := testutil.ToFloat64(c.canary.m.fallbacks); int(got) != share {
				t.Errorf("%v fallbacks counted, want the canary's share, %d", got, share)
			}
			if got := testutil.ToFloat64(c.m.down); got != 0 {
				t.Errorf("tier down = %v for a failing candidate", got)
			}
			if tc.listed && testutil.ToFloat64(c.canary.m.errors.WithLabelValues(variantCanary)) == 0 {
				t.Error("the candidate's failed calls are not counted as its errors")
			}
		})
	}
}

// TestReloadCanary: a reload that adds a canary sends its share of the
// messages fetched from then on to the candidate; one that removes it
// sends them all to the current replica again; each is logged.
func TestReloadCanary(t *testing.T) {
	e := setup(t)
	candidate := newReplicaNaming(t, "edge", "0123456789ab@v2", exitAs(0))
	current := newReplicaNaming(t, "edge", "ba9876543210", exitAs(0))
	url := replicaLists(t, "edge", func() []string { return []string{current.srv.URL} }, func() []string { return []string{candidate.srv.URL} })
	var logs testsupport.Buffer
	c, err := New(Config{Pipeline: e.p, Tier: "edge", ReplicasURL: url, Registerer: prometheus.NewRegistry(), DrainTimeout: 3 * time.Second,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	e.run(t, c)
	batch := func(prefix string) {
		t.Helper()
		e.produce(t, 300, prefix)
		testsupport.WaitFor(t, 30*time.Second, prefix+" committed", func() bool { return e.lag(t) == 0 })
	}
	count := func(prefix string) (cur, cand, share int) {
		cs, ds := current.ids(), candidate.ids()
		for i := range 300 {
			id := fmt.Sprintf("%s%d", prefix, i)
			cur += cs[id]
			cand += ds[id]
			if takesCanary(id, 0.5) {
				share++
			}
		}
		return cur, cand, share
	}
	batch("before-")
	if cur, cand, _ := count("before-"); cur != 300 || cand != 0 {
		t.Errorf("without a canary: %d to the current replica, %d to the candidate", cur, cand)
	}
	p := *e.p
	p.Tiers = slices.Clone(e.p.Tiers)
	p.Tiers[0].Canary = &pipeline.Canary{Model: "e2.onnx", Share: 0.5}
	if err := c.Reload(&p); err != nil {
		t.Fatal(err)
	}
	batch("during-")
	if _, cand, share := count("during-"); cand != share {
		t.Errorf("with a canary of share 0.5: the candidate decided %d of 300, its share is %d", cand, share)
	}
	if err := c.Reload(e.p); err != nil {
		t.Fatal(err)
	}
	batch("after-")
	if cur, cand, _ := count("after-"); cur != 300 || cand != 0 {
		t.Errorf("after the canary's removal: %d to the current replica, %d to the candidate", cur, cand)
	}
	for _, line := range []string{
		`msg="reload: applied" setting=canary old=unset new="model e2.onnx, share 0.5, shadow_ratio 0"`,
		`msg="reload: applied" setting=canary old="model e2.onnx, share 0.5, shadow_ratio 0" new=unset`,
	} {
		if !strings.Contains(logs.String(), line) {
			t.Errorf("logs lack %q:\n%s", line, logs.String())
		}
	}
}
