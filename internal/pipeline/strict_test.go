package pipeline

import (
	"strings"
	"testing"
)

// TestUnknownAndMistypedKeys: every key the pipeline has no field for and
// every value of the wrong kind is reported at once, with its YAML path,
// its line and, when a field name is close, that name; never a Go type.
func TestUnknownAndMistypedKeys(t *testing.T) {
	y := `name: t
nmae: t
input: {dtype: int7, shape: [4]}
classes: [a, b]
kafka:
  partitions: four
  sasl:
    - {mechanism: PLAIN, username: u, pasword: x}
  <<: {client_idd: x}
sites:
  - name: edge
    kafka: {partitons: 3}
    funnel: {urls: http://x}
tiers:
  - name: edge
    model: e.onnx
    exit: {output: o, treshold: 0.5}
    connector: {max_wait: soon}
    replicas: {min: 1, max: lots}
  - name: cloud
    model: c.onnx
    exit: {output: o}
    conector: {}
results: [a]
`
	want := []string{
		"nmae: unknown field (line 2); did you mean name?",
		`input.dtype: unknown dtype "int7"`,
		`kafka.partitions: "four" is not a whole number (32 bits) (line 6)`,
		"kafka.sasl[0] (u).pasword: unknown field (line 8); did you mean password?",
		"kafka.client_idd: unknown field (line 9); did you mean client_id?",
		"sites[0] (edge).kafka.partitons: unknown field (line 12); did you mean partitions?",
		"sites[0] (edge).funnel.urls: unknown field (line 13); did you mean url?",
		"tiers[0] (edge).exit.treshold: unknown field (line 17); did you mean threshold?",
		`tiers[0] (edge).connector.max_wait: "soon" is not a duration like 500ms, 10s or 1m (line 18)`,
		`tiers[0] (edge).replicas.max: "lots" is not a whole number (64 bits) (line 19)`,
		"tiers[1] (cloud).conector: unknown field (line 23); did you mean connector?",
		"results: a list is not a mapping (line 24)",
	}
	_, err := Parse([]byte(y))
	if err == nil {
		t.Fatal("parsed")
	}
	got := strings.Split(err.Error(), "\n")
	if len(got) != len(want) {
		t.Errorf("%d errors, want %d:\n%s", len(got), len(want), err)
	}
	for i := range min(len(got), len(want)) {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("error %d:\n%s\nwant it to start with\n%s", i, got[i], want[i])
		}
	}
	for _, gotype := range []string{"pipeline.", "int32", "time.Duration", "not found in type"} {
		if strings.Contains(err.Error(), gotype) {
			t.Errorf("error names a Go type (%s):\n%s", gotype, err)
		}
	}
}

// TestFarKeyHasNoSuggestion: a key far from every field gets no guess.
func TestFarKeyHasNoSuggestion(t *testing.T) {
	_, err := Parse([]byte("name: t\nlatency_budget: 3\n"))
	if err == nil || err.Error() != "latency_budget: unknown field (line 2)" {
		t.Errorf("error %v, want exactly %q", err, "latency_budget: unknown field (line 2)")
	}
}
