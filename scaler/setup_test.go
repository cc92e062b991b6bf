package scaler

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/proctest"
	"github.com/ddnn-continuum/ddnn/internal/runtime/replicas"
	"github.com/ddnn-continuum/ddnn/internal/testsupport"
)

// replicaEnv makes the test binary play `ddnn inference` when a process
// runtime starts it (see proctest.FakeInference).
const replicaEnv = "DDNN_SCALER_TEST_REPLICA"

func TestMain(m *testing.M) { proctest.Main(m, replicaEnv, proctest.FakeInference) }

// StartTiers, which both `ddnn up` and `ddnn scaler` set their tiers up
// with, starts a fixed-size tier's replicas and lists them, but leaves it
// out of the scaler's targets; a scaled tier starts at its minimum and is
// a target; a tier on another site gets neither.
func TestStartTiers(t *testing.T) {
	const file = "../deploy/pipeline.yaml"
	p, err := pipeline.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	p.Tiers[0].Replicas.Min, p.Tiers[0].Replicas.Max = 2, 2 // edge: fixed
	p.Tiers[1].Replicas.Min, p.Tiers[1].Replicas.Max = 1, 3 // fog: scaled
	p.Tiers = p.Tiers[:2]
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out testsupport.Buffer
	tiers, err := StartTiers(ctx, p, pipeline.LocalSite, replicas.Options{File: file, Out: &out})
	if err != nil {
		t.Fatal(err)
	}
	defer tiers.Close(context.Background())
	var got []string
	for _, tg := range tiers.Targets {
		got = append(got, tg.Tier)
		if tg.Min != 1 || tg.Max != 3 || tg.Group != p.ConsumerGroup("fog") || tg.Topic != p.InputTopic("fog") || tg.Runtime != tiers.Runtimes["fog"] {
			t.Errorf("target %+v, want fog's", tg)
		}
	}
	if !slices.Equal(got, []string{"fog"}) {
		t.Errorf("targets %v, want [fog]", got)
	}
	for tier, want := range map[string]int{"edge": 2, "fog": 1} {
		rt := tiers.Runtimes[tier]
		if rt == nil {
			t.Errorf("no runtime for tier %s", tier)
			continue
		}
		proctest.WaitFor(t, tier+"'s replicas ready", func() bool {
			reps, err := rt.List(ctx)
			ready := 0
			for _, r := range reps {
				if r.Ready {
					ready++
				}
			}
			return err == nil && len(reps) == want && ready == want
		})
	}
	if len(tiers.Runtimes) != 2 {
		t.Errorf("runtimes for %d tiers, want 2", len(tiers.Runtimes))
	}

	// A site without tiers has nothing to start.
	none, err := StartTiers(ctx, p, "elsewhere", replicas.Options{File: file, Out: &out})
	if err != nil || len(none.Runtimes)+len(none.Targets) != 0 {
		t.Errorf("StartTiers of a site without tiers = %+v, %v; want nothing", none, err)
	}
}
