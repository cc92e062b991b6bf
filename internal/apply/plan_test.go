package apply

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/testsupport"
)

// shipped is the sample pipeline with its model paths absolute.
func shipped(t *testing.T) string { return testsupport.Shipped(t, "deploy/pipeline.yaml") }

// spec loads YAML text as apply does a file.
func spec(t *testing.T, y string) *Spec {
	t.Helper()
	p, err := pipeline.Parse([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	s, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func paths(cs []Change) []string {
	var ps []string
	for _, c := range cs {
		ps = append(ps, c.Path)
	}
	return ps
}

// TestLive: thresholds, exit policies, replica bounds, scaling rules,
// connector batching and timeouts and the device rate limit change in
// place, with their old and new values; nothing rolls out or is refused.
func TestLive(t *testing.T) {
	y := shipped(t)
	next := strings.Replace(y, "threshold: 0.9", "threshold: 0.8", 1)
	next = strings.Replace(next, "      policy: max_prob\n      threshold: 0.6", "      policy: margin\n      threshold: 0.6", 1)
	next = strings.Replace(next, "    forward:\n      output: forward\n  - name: cloud", "    forward:\n      output: forward\n    replicas: {min: 0, max: 3}\n    scaling: {lag_per_replica: 50, cooldown_to_zero: 5s}\n    connector: {max_batch: 32, max_wait: 5ms, request_timeout: 3s, backoff: 10ms, max_backoff: 1s}\n  - name: cloud", 1)
	next += "funnel:\n  device_rate_limit: {rate: 10, burst: 20, max_devices: 500}\n"
	plan := Compute(spec(t, y), spec(t, next))
	want := []string{
		"tiers[0] (edge).exit.threshold",
		"tiers[1] (fog).exit.policy",
		"tiers[1] (fog).replicas.min", "tiers[1] (fog).replicas.max",
		"tiers[1] (fog).scaling.lag_per_replica", "tiers[1] (fog).scaling.cooldown_to_zero",
		"tiers[1] (fog).connector.max_batch", "tiers[1] (fog).connector.max_wait", "tiers[1] (fog).connector.request_timeout",
		"tiers[1] (fog).connector.backoff", "tiers[1] (fog).connector.max_backoff",
		"funnel.device_rate_limit.rate", "funnel.device_rate_limit.burst", "funnel.device_rate_limit.max_devices",
	}
	if got := paths(plan.Live); !slices.Equal(got, want) {
		t.Errorf("live:\n got %v\nwant %v", got, want)
	}
	if !plan.OK() || len(plan.Rollouts) > 0 {
		t.Errorf("refused %v, rollouts %v: want none", plan.Refused, plan.Rollouts)
	}
	if c := plan.Live[0]; c.Old != "0.9" || c.New != "0.8" {
		t.Errorf("threshold: %s -> %s, want 0.9 -> 0.8", c.Old, c.New)
	}
	if c := plan.Live[7]; c.Old != "0s" || c.New != "5ms" {
		t.Errorf("max_wait: %s -> %s, want 0s -> 5ms", c.Old, c.New)
	}
}

// TestRollout: a tier whose model file has other bytes, or whose
// inference settings changed, rolls out; a copy of the same model at
// another path does not.
func TestRollout(t *testing.T) {
	y := shipped(t)
	fog := filepath.Join(testsupport.Root(t), "models", "fog.onnx")
	b, err := os.ReadFile(fog)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	same, other := filepath.Join(dir, "same.onnx"), filepath.Join(dir, "other.onnx")
	if err := os.WriteFile(same, b, 0o644); err != nil {
		t.Fatal(err)
	}
	// Another model file that fits the chain: the fog retrained on the
	// shipped edge's features.
	if err := os.WriteFile(other, must(os.ReadFile(filepath.Join(testsupport.Root(t), "models", "testdata", "rollout", "fog-retrained.onnx"))), 0o644); err != nil {
		t.Fatal(err)
	}
	running := spec(t, y)
	if plan := Compute(running, spec(t, strings.Replace(y, fog, same, 1))); !plan.Empty() {
		t.Errorf("fog at a copy of its model: %+v, want an empty plan", plan)
	}
	next := strings.Replace(y, fog, other, 1)
	next = strings.Replace(next, "    inference:\n      intra_op_threads: 1\n", "    inference:\n      intra_op_threads: 2\n", 1)
	plan := Compute(running, spec(t, next))
	if !plan.OK() || len(plan.Live) > 0 || len(plan.Rollouts) != 2 {
		t.Fatalf("plan %+v: want the edge and fog tiers rolled out, nothing else", plan)
	}
	edge, fogR := plan.Rollouts[0], plan.Rollouts[1]
	if edge.Tier != "edge" || !slices.Equal(paths(edge.Changes), []string{"tiers[0] (edge).inference.intra_op_threads"}) {
		t.Errorf("edge rollout %+v, want intra_op_threads", edge)
	}
	if fogR.Tier != "fog" || !slices.Equal(paths(fogR.Changes), []string{"tiers[1] (fog).model"}) ||
		fogR.Changes[0].Old != "sha256 "+running.ModelSHA256["fog"] || !strings.HasPrefix(fogR.Changes[0].New, "sha256 ") || fogR.Changes[0].New == fogR.Changes[0].Old {
		t.Errorf("fog rollout %+v, want its model's sha256 old -> new", fogR)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestRefused: what cannot change live is refused with its reason, and
// the plan as a whole; a change of tier order or name disables the live
// and rollout rules of the tiers.
func TestRefused(t *testing.T) {
	y := shipped(t)
	running := spec(t, y)
	for _, tc := range []struct {
		name, old, new string
		want, reason   string // a refused setting and its reason
	}{
		{"input", "shape: [1, 28, 28]", "shape: [1, 28, 29]", "input.shape", "type and shape"},
		{"name", "name: fmnist", "name: other", "name", "another pipeline"},
		{"tier name", "name: fog", "name: mist", "tiers[1] (fog).name", "renaming or reordering"},
		{"tier output", "exit_probs\n      scores: probabilities\n      policy: max_prob\n      threshold: 0.9", "probs\n      scores: probabilities\n      policy: max_prob\n      threshold: 0.9", "tiers[0] (edge).exit.output", "model interface"},
		{"admin", "name: fmnist\n", "name: fmnist\nadmin: {listen: 127.0.0.1:9999}\n", "admin.listen", "admin address"},
		{"kafka", "name: fmnist\n", "name: fmnist\nkafka: {partitions: 8}\n", "kafka.partitions", "Kafka clients"},
	} {
		plan := Compute(running, spec(t, strings.Replace(y, tc.old, tc.new, 1)))
		i := slices.IndexFunc(plan.Refused, func(c Change) bool { return c.Path == tc.want })
		if plan.OK() || i < 0 || !strings.Contains(plan.Refused[i].Reason, tc.reason) {
			t.Errorf("%s: refused %+v, want %s because %q", tc.name, plan.Refused, tc.want, tc.reason)
		}
		if len(plan.Live)+len(plan.Rollouts) > 0 {
			t.Errorf("%s: live %v, rollouts %v: want none", tc.name, plan.Live, plan.Rollouts)
		}
	}
	// A threshold changed with a renamed tier is not live: the tiers are
	// not the same ones.
	next := strings.Replace(strings.Replace(y, "name: fog", "name: mist", 1), "threshold: 0.9", "threshold: 0.8", 1)
	plan := Compute(running, spec(t, next))
	if len(plan.Live) > 0 || !slices.Contains(paths(plan.Refused), "tiers[0] (edge).exit.threshold") {
		t.Errorf("threshold with a renamed tier: live %v, refused %v: want it refused", paths(plan.Live), paths(plan.Refused))
	}
}

// liveSettings and rolloutSettings are the settings Compute changes in
// place or by a rollout, for a tier at tiers[0] (edge) and the top-level
// funnel. Every other setting of the pipeline must be refused.
var (
	liveSettings = []string{
		"tiers[0] (edge).exit.policy", "tiers[0] (edge).exit.threshold",
		"tiers[0] (edge).replicas.min", "tiers[0] (edge).replicas.max",
		"tiers[0] (edge).scaling.poll_interval", "tiers[0] (edge).scaling.target_drain", "tiers[0] (edge).scaling.lag_per_replica",
		"tiers[0] (edge).scaling.activation_lag", "tiers[0] (edge).scaling.stabilization_window", "tiers[0] (edge).scaling.cooldown_to_zero",
		"tiers[0] (edge).connector.max_batch", "tiers[0] (edge).connector.max_wait", "tiers[0] (edge).connector.max_attempts", "tiers[0] (edge).connector.request_timeout",
		"tiers[0] (edge).connector.backoff", "tiers[0] (edge).connector.max_backoff",
		"tiers[0] (edge).canary",
		"funnel.device_rate_limit.rate", "funnel.device_rate_limit.burst", "funnel.device_rate_limit.max_devices",
	}
	rolloutSettings = []string{
		"tiers[0] (edge).version", "tiers[0] (edge).accepts", "tiers[0] (edge).inference.intra_op_threads", "tiers[0] (edge).inference.max_batch", "tiers[0] (edge).inference.max_request_bytes",
		"tiers[0] (edge).inference.emulate.service_time_per_sample", "tiers[0] (edge).inference.emulate.max_concurrency",
	}
	// unchangedSettings change nothing: a model is known by its sha256,
	// not its path.
	unchangedSettings = []string{"tiers[0] (edge).model"}
)

// TestEverySettingClassified changes each setting of the pipeline, one
// at a time, found by walking the Pipeline struct, in the sample pipeline
// and in the one on three sites: the settings listed above land in their
// kind, and every other one, a field added to package pipeline later
// included, is refused. Adding a field to Live or Rollout without listing
// it here fails.
func TestEverySettingClassified(t *testing.T) {
	siteLive := []string{
		"sites[0] (edge).funnel.device_rate_limit.rate", "sites[0] (edge).funnel.device_rate_limit.burst",
		"sites[0] (edge).funnel.device_rate_limit.max_devices",
	}
	for _, tc := range []struct {
		file      string
		live      []string
		minWalked int
		mustWalk  []string
	}{
		{"deploy/pipeline.yaml", liveSettings, 90, slices.Concat(liveSettings, rolloutSettings, unchangedSettings)},
		{"deploy/examples/continuum.yaml", slices.Concat(liveSettings, siteLive), 140, append(siteLive, "sites[0] (edge).kafka.embedded_listen", "sites[0] (edge).admin.listen")},
	} {
		t.Run(tc.file, func(t *testing.T) {
			y := testsupport.Shipped(t, tc.file)
			running := spec(t, y)
			var all []string
			for k := 0; ; k++ {
				next := spec(t, y)
				path, ok := mutate(next.Pipeline, k)
				if !ok {
					break
				}
				all = append(all, path)
				checkKind(t, path, Compute(running, next), tc.live)
			}
			for _, p := range tc.mustWalk {
				if !slices.Contains(all, p) {
					t.Errorf("%s is listed but is no setting of the pipeline", p)
				}
			}
			if len(all) < tc.minWalked {
				t.Errorf("walked %d settings: fewer than the pipeline has", len(all))
			}
		})
	}
}

// checkKind checks that the plan of a change of the setting at path puts
// it, alone, in its kind: live when it is one of live, a rollout of edge,
// nothing, or refused.
func checkKind(t *testing.T, path string, plan Plan, live []string) {
	t.Helper()
	switch {
	case slices.Contains(live, path):
		if !slices.Equal(paths(plan.Live), []string{path}) || len(plan.Rollouts)+len(plan.Refused) > 0 {
			t.Errorf("%s: %+v, want it live alone", path, plan)
		}
	case slices.Contains(rolloutSettings, path):
		if len(plan.Rollouts) != 1 || !slices.Equal(paths(plan.Rollouts[0].Changes), []string{path}) || len(plan.Live)+len(plan.Refused) > 0 {
			t.Errorf("%s: %+v, want a rollout of edge alone", path, plan)
		}
	case slices.Contains(unchangedSettings, path):
		if !plan.Empty() {
			t.Errorf("%s: %+v, want nothing", path, plan)
		}
	default:
		if plan.OK() || len(plan.Live)+len(plan.Rollouts) > 0 || !slices.ContainsFunc(plan.Refused, func(c Change) bool { return strings.HasPrefix(c.Path, path) }) {
			t.Errorf("%s: %+v, want it refused", path, plan)
		}
	}
}

// mutate changes the k-th setting of p in walk order and returns its
// path; false when p has fewer settings. A list of sections is one
// setting (an element added) besides the settings of its first element.
func mutate(p *pipeline.Pipeline, k int) (string, bool) {
	n := 0
	var found string
	var walk func(path string, v reflect.Value)
	hit := func(path string, change func()) {
		if n == k {
			change()
			found = path
		}
		n++
	}
	walk = func(path string, v reflect.Value) {
		switch v.Kind() {
		case reflect.Struct:
			t := v.Type()
			for i := range t.NumField() {
				key, opts, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
				if key == "-" || !t.Field(i).IsExported() {
					continue
				}
				sub := path
				if opts != "inline" && path != "" {
					sub = path + "." + key
				} else if opts != "inline" {
					sub = key
				}
				walk(sub, v.Field(i))
			}
		case reflect.Pointer:
			e := v.Type().Elem()
			if e.Kind() == reflect.Struct {
				if v.IsNil() {
					hit(path, func() { v.Set(reflect.New(e)) })
					return
				}
				c := reflect.New(e)
				c.Elem().Set(v.Elem())
				v.Set(c)
				walk(path, v.Elem())
				return
			}
			hit(path, func() {
				c := reflect.New(e)
				if !v.IsNil() {
					c.Elem().Set(v.Elem())
				}
				bump(c.Elem())
				v.Set(c)
			})
		case reflect.Slice:
			e := v.Type().Elem()
			hit(path, func() {
				v.Set(reflect.Append(reflect.AppendSlice(reflect.MakeSlice(v.Type(), 0, v.Len()+1), v), reflect.New(e).Elem()))
			})
			if e.Kind() == reflect.Struct && v.Len() > 0 {
				c := reflect.AppendSlice(reflect.MakeSlice(v.Type(), 0, v.Len()), v)
				v.Set(c)
				walk(firstElement(path, v.Index(0)), v.Index(0))
			}
		case reflect.Map:
			hit(path, func() {
				m := reflect.MakeMap(v.Type())
				m.SetMapIndex(reflect.ValueOf("added.setting"), reflect.ValueOf("1"))
				v.Set(m)
			})
		default:
			hit(path, func() { bump(v) })
		}
	}
	walk("", reflect.ValueOf(p).Elem())
	return found, k < n
}

// bump changes a scalar setting to another value of its kind.
func bump(v reflect.Value) {
	switch v.Kind() {
	case reflect.String:
		v.SetString(v.String() + "x")
	case reflect.Bool:
		v.SetBool(!v.Bool())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if v.Type() == reflect.TypeFor[time.Duration]() {
			v.SetInt(v.Int() + int64(time.Second))
			return
		}
		v.SetInt(v.Int() + 1)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(v.Uint() + 1)
	case reflect.Float32, reflect.Float64:
		v.SetFloat(v.Float()/2 + 0.25)
	default:
		panic(fmt.Sprintf("no way to change a %s setting", v.Type()))
	}
}

// firstElement is the path pipeline.Diff gives a list's first section:
// with its name when it has one (tiers[0] (edge)).
func firstElement(path string, v reflect.Value) string {
	if n := v.FieldByName("Name"); n.IsValid() && n.Kind() == reflect.String {
		return fmt.Sprintf("%s[0] (%s)", path, n.String())
	}
	return path + "[0]"
}
