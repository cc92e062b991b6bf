package inference

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
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

// newFunction serves tier of the shipped pipeline with a loaded session.
func newFunction(t testing.TB, tier string, cfg Config) (*Function, *httptest.Server) {
	t.Helper()
	if cfg.Pipeline == nil {
		cfg.Pipeline = shipped(t)
	}
	cfg.Tier = tier
	f, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.SetSession(openSession(t, cfg.Pipeline, tier)); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(f.Handler())
	t.Cleanup(srv.Close)
	return f, srv
}

func post(t testing.TB, url, contentType string, body []byte) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.Post(url+httpapi.PathInfer, contentType, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

func encode(t testing.TB, enc wire.Encoding, msgs []wire.Message) []byte {
	t.Helper()
	b, err := wire.AppendMessages(nil, enc, msgs)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func imageMessages(t testing.TB, n int) []wire.Message {
	imgs := testImages(t, n)
	msgs := make([]wire.Message, n)
	for i := range msgs {
		msgs[i] = wire.Message{ID: string(rune('a' + i%26)), Tensor: wire.Tensor{DType: wire.Uint8, Shape: []int{1, 28, 28}, Data: imgs[i]}}
	}
	return msgs
}

// modelSHA is the first 12 hex digits of the sha256 of tier's model in
// the shipped pipeline.
func modelSHA(t testing.TB, tier string) string {
	t.Helper()
	p := shipped(t)
	tr, _, err := p.Tier(tier)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p.ModelPath(tr))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])[:12]
}

// TestAnswerNamesModelVersion: a tier with a version label names its
// model as sha@label in every answer (httpapi.HeaderModel), which reads
// back as the model's sha256 prefix and the label.
func TestAnswerNamesModelVersion(t *testing.T) {
	p := shipped(t)
	p.Tiers[0].Version = "v2"
	_, srv := newFunction(t, "edge", Config{Pipeline: p, Metrics: NewMetrics(prometheus.NewRegistry())})
	resp, body := post(t, srv.URL, wire.Binary.ContentType(), encode(t, wire.Binary, imageMessages(t, 2)))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	h := resp.Header.Get(httpapi.HeaderModel)
	if want := modelSHA(t, "edge") + "@v2"; h != want {
		t.Errorf("answer names model %q, want %q", h, want)
	}
	if v, err := wire.ParseModelVersion(h); err != nil || v != (wire.ModelVersion{SHA: modelSHA(t, "edge"), Version: "v2"}) {
		t.Errorf("ParseModelVersion(%q) = %+v, %v", h, v, err)
	}
}

// TestInferBothEncodings sends the same batch as JSON and as binary and
// expects the same per-sample decisions, in the encoding of the request.
func TestInferBothEncodings(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry())
	_, srv := newFunction(t, "edge", Config{Metrics: m})
	msgs := imageMessages(t, 32)
	var got [2][]wire.Decision
	for i, enc := range []wire.Encoding{wire.JSON, wire.Binary} {
		resp, body := post(t, srv.URL, enc.ContentType(), encode(t, enc, msgs))
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: status %d: %s", enc.ContentType(), resp.StatusCode, body)
		}
		if ct := resp.Header.Get("Content-Type"); ct != enc.ContentType() {
			t.Errorf("response content type %q, want %q", ct, enc.ContentType())
		}
		if got, want := resp.Header.Get(httpapi.HeaderModel), modelSHA(t, "edge"); got != want {
			t.Errorf("answer names model %q, want %q (the sha256 prefix of the edge model)", got, want)
		}
		ds, err := wire.DecodeDecisions(enc, body)
		if err != nil {
			t.Fatal(err)
		}
		got[i] = ds
	}
	exits, forwards := 0, 0
	for i, d := range got[0] {
		b := got[1][i]
		if d.ID != msgs[i].ID || d.Tier != "edge" || d.Exit != b.Exit || d.Class != b.Class || d.Confidence != b.Confidence {
			t.Errorf("decision %d: json %+v, binary %+v", i, d, b)
		}
		switch {
		case d.Exit && (d.Label == "" || d.Forward != nil || d.Confidence < 0.9):
			t.Errorf("exit decision %d malformed: %+v", i, d)
		case !d.Exit && (d.Forward == nil || d.Forward.Len() != 32 || d.Confidence >= 0.9):
			t.Errorf("forward decision %d malformed: %+v", i, d)
		}
		if d.Exit {
			exits++
		} else {
			forwards++
		}
	}
	// The shipped edge threshold lets some but not all of these samples out.
	if exits == 0 || forwards == 0 {
		t.Errorf("exits %d, forwards %d: want per-sample decisions of both kinds", exits, forwards)
	}
	if v := testutil.ToFloat64(m.exits.WithLabelValues("edge")); v != float64(2*exits) {
		t.Errorf("exits metric %v, want %d", v, 2*exits)
	}
}

// TestInferJSONByHand is what a person types with curl.
func TestInferJSONByHand(t *testing.T) {
	_, srv := newFunction(t, "cloud", Config{})
	data := make([]string, 16)
	for i := range data {
		data[i] = "0.5"
	}
	body := `{"messages":[{"id":"m1","device":"d1","tensor":{"dtype":"float32","shape":[16],"data":[` + strings.Join(data, ",") + `]}}]}`
	resp, b := post(t, srv.URL, "application/json; charset=utf-8", []byte(body))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
	var out struct {
		Decisions []struct {
			ID    string `json:"id"`
			Exit  bool   `json:"exit"`
			Label string `json:"label"`
		} `json:"decisions"`
	}
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if len(out.Decisions) != 1 || out.Decisions[0].ID != "m1" || !out.Decisions[0].Exit || out.Decisions[0].Label == "" {
		t.Errorf("decisions = %s", b)
	}
}

func floatBody(t testing.TB, vals ...[]float32) []byte {
	msgs := make([]wire.Message, len(vals))
	for i, v := range vals {
		msgs[i] = wire.Message{ID: "f" + string(rune('0'+i)), Tensor: wire.Float32Tensor([]int{len(v)}, v)}
	}
	return encode(t, wire.Binary, msgs)
}

func repeat(v []float32, n int) [][]float32 {
	out := make([][]float32, n)
	for i := range out {
		out[i] = v
	}
	return out
}

func filled(n int, v float32) []float32 {
	out := make([]float32, n)
	for i := range out {
		out[i] = v
	}
	return out
}

// TestInferBadInput: each bad request gets its own status and a message
// naming what was expected; the function keeps serving good ones.
func TestInferBadInput(t *testing.T) {
	p := shipped(t)
	p.Tiers[1].Inference.MaxRequestBytes = 4096
	m := NewMetrics(prometheus.NewRegistry())
	_, srv := newFunction(t, "fog", Config{Pipeline: p, Metrics: m})
	_, edge := newFunction(t, "edge", Config{})

	nan := filled(32, 1)
	nan[17] = float32(math.NaN())
	inf := filled(32, 1)
	inf[3] = float32(math.Inf(-1))
	for _, tc := range []struct {
		name        string
		url         string
		contentType string
		body        []byte
		status      int
		wants       []string
	}{
		{"wrong element count", srv.URL, wire.ContentTypeBinary, floatBody(t, filled(32, 1), filled(31, 1)), 400,
			[]string{"1 of 2 messages rejected", `"index":1`, "has 31 elements", `tier \"fog\" takes 32: shape [32]`}},
		{"wrong element count at the edge", edge.URL, wire.ContentTypeJSON,
			[]byte(`{"messages":[{"id":"x","tensor":{"dtype":"uint8","shape":[3],"data":[1,2,3]}}]}`), 400,
			[]string{"has 3 elements", "takes 784: shape [1 28 28]"}},
		{"wrong dtype", srv.URL, wire.ContentTypeJSON,
			[]byte(`{"messages":[{"tensor":{"dtype":"uint8","shape":[32],"data":[` + strings.Repeat("1,", 31) + `1]}}]}`), 400,
			[]string{"dtype uint8", "takes float32 [32]"}},
		{"NaN", srv.URL, wire.ContentTypeBinary, floatBody(t, nan), 400, []string{"element 17 is NaN"}},
		{"Inf", srv.URL, wire.ContentTypeBinary, floatBody(t, filled(32, 1), inf), 400, []string{`"index":1`, "element 3 is -Inf"}},
		{"empty batch json", srv.URL, wire.ContentTypeJSON, []byte(`{"messages":[]}`), 400, []string{"empty batch"}},
		{"empty batch binary", srv.URL, wire.ContentTypeBinary, encode(t, wire.Binary, nil), 400, []string{"empty batch"}},
		{"undecodable", srv.URL, wire.ContentTypeJSON, []byte(`{"messages":[{"bogus":1}]}`), 400, []string{"bogus"}},
		{"body over limit", srv.URL, wire.ContentTypeBinary, floatBody(t, repeat(filled(32, 1), 40)...), 413,
			[]string{"over the limit of 4096 bytes"}},
		{"unknown content type", srv.URL, "text/plain", []byte("hello"), 415, []string{"application/json", wire.ContentTypeBinary}},
		{"no content type", srv.URL, "", []byte("{}"), 415, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := post(t, tc.url, tc.contentType, tc.body)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			eb, err := wire.DecodeErrorBody(body)
			if err != nil || eb.Error == "" {
				t.Fatalf("error body %q is not an ErrorBody: %v", body, err)
			}
			for _, w := range tc.wants {
				if !strings.Contains(string(body), w) {
					t.Errorf("body %s lacks %q", body, w)
				}
			}
		})
	}
	// A good request after all that still works.
	resp, body := post(t, srv.URL, wire.ContentTypeBinary, floatBody(t, filled(32, 1)))
	if resp.StatusCode != http.StatusOK {
		t.Errorf("good request after bad ones: %d %s", resp.StatusCode, body)
	}
	if v := testutil.ToFloat64(m.requests.WithLabelValues("fog", "bad_request")); v < 6 {
		t.Errorf("bad_request count %v", v)
	}
}

func TestInferMaxBatch(t *testing.T) {
	p := shipped(t)
	p.Tiers[1].Inference.MaxBatch = 2
	_, srv := newFunction(t, "fog", Config{Pipeline: p})
	resp, body := post(t, srv.URL, wire.ContentTypeBinary, floatBody(t, filled(32, 1), filled(32, 1), filled(32, 1)))
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(body), "batch of 3 messages over max_batch 2") {
		t.Errorf("status %d: %s", resp.StatusCode, body)
	}
}

func TestInferNotReadyAndMethod(t *testing.T) {
	f, err := New(Config{Pipeline: shipped(t), Tier: "edge"})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(f.Handler())
	defer srv.Close()
	for path, want := range map[string]int{"/healthz": 200, "/readyz": 503} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("%s: %d, want %d", path, resp.StatusCode, want)
		}
	}
	resp, body := post(t, srv.URL, wire.ContentTypeBinary, encode(t, wire.Binary, imageMessages(t, 1)))
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Errorf("infer before ready: %d %s", resp.StatusCode, body)
	}
	resp, err = http.Get(srv.URL + httpapi.PathInfer)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET %s: %d", httpapi.PathInfer, resp.StatusCode)
	}
}

func TestSetSessionChecksInput(t *testing.T) {
	p := shipped(t)
	p.Input.Shape = []int{28, 27}
	f, err := New(Config{Pipeline: p, Tier: "edge"})
	if err != nil {
		t.Fatal(err)
	}
	err = f.SetSession(openSession(t, p, "edge"))
	if err == nil || !strings.Contains(err.Error(), "pipeline input.shape [28 27] has 756 elements") {
		t.Errorf("error = %v", err)
	}
}

// TestInferNonFiniteOutputIsTheRecords: a finite input that drives the
// model out of range (3e38 everywhere) is the record's fault: the function
// answers 400 naming that record and the reason, and keeps serving; the
// other records of the batch are fine on their own.
func TestInferNonFiniteOutputIsTheRecords(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry())
	_, srv := newFunction(t, "fog", Config{Metrics: m})
	resp, body := post(t, srv.URL, wire.ContentTypeBinary, floatBody(t, filled(32, 1), filled(32, 3e38)))
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("status %d, want 400: %s", resp.StatusCode, body)
	}
	eb, err := wire.DecodeErrorBody(body)
	if err != nil {
		t.Fatal(err)
	}
	if len(eb.Rejected) != 1 || eb.Rejected[0].Index != 1 || eb.Rejected[0].ID != "f1" {
		t.Fatalf("rejected %+v, want only message 1 (f1)", eb.Rejected)
	}
	if r := eb.Rejected[0].Reason; !strings.Contains(r, `tier "fog": model output "exit_probs" is not finite for this record (element `) {
		t.Errorf("reason %q does not say the model output is not finite", r)
	}
	if v := testutil.ToFloat64(m.requests.WithLabelValues("fog", "error")); v != 0 {
		t.Errorf("counted %v errors, want the record counted as a bad request", v)
	}
	resp, body = post(t, srv.URL, wire.ContentTypeBinary, floatBody(t, filled(32, 1)))
	if resp.StatusCode != http.StatusOK {
		t.Errorf("the good record alone: status %d: %s", resp.StatusCode, body)
	}
}

// TestInferBoundsHops: each tier adds one hop, so a message reaching tier
// i has at most i, naming earlier tiers in order; more (a forged record
// that would be copied into every forward and result) is rejected.
func TestInferBoundsHops(t *testing.T) {
	_, fog := newFunction(t, "fog", Config{})
	_, cloud := newFunction(t, "cloud", Config{})
	_, edge := newFunction(t, "edge", Config{})
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	hops := func(tiers ...string) []wire.Hop {
		out := make([]wire.Hop, len(tiers))
		for i, t := range tiers {
			out[i] = wire.Hop{Tier: t, At: at}
		}
		return out
	}
	forged := make([]string, 20000)
	for i := range forged {
		forged[i] = "edge"
	}
	feature := wire.Float32Tensor([]int{32}, filled(32, 1))
	features := wire.Float32Tensor([]int{16}, filled(16, 1))
	image := imageMessages(t, 1)[0].Tensor
	for _, tc := range []struct {
		name   string
		url    string
		tensor wire.Tensor
		hops   []wire.Hop
		want   string // "" for accepted
	}{
		{"edge without hops", edge.URL, image, nil, ""},
		{"edge with a hop", edge.URL, image, hops("edge"), `hops: 1 given, a message reaching tier "edge" has passed at most 0 tiers ()`},
		{"fog after edge", fog.URL, feature, hops("edge"), ""},
		{"fog without hops", fog.URL, feature, nil, ""},
		{"fog with 20000 forged hops", fog.URL, feature, hops(forged...), `hops: 20000 given, a message reaching tier "fog" has passed at most 1 tiers (edge)`},
		{"fog after itself", fog.URL, feature, hops("fog"), `hops: hop 0 names tier "fog", not one of the tiers before "fog" in pipeline order (edge)`},
		{"cloud after edge and fog", cloud.URL, features, hops("edge", "fog"), ""},
		{"cloud after fog only", cloud.URL, features, hops("fog"), ""},
		{"cloud after fog and edge", cloud.URL, features, hops("fog", "edge"), `hops: hop 1 names tier "edge", not one of the tiers before "cloud" in pipeline order (edge, fog)`},
		{"cloud after edge twice", cloud.URL, features, hops("edge", "edge"), `hop 1 names tier "edge"`},
		{"cloud after a stranger", cloud.URL, features, hops("x"), `hop 0 names tier "x"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := encode(t, wire.Binary, []wire.Message{{ID: "h", Hops: tc.hops, Tensor: tc.tensor}})
			resp, b := post(t, tc.url, wire.ContentTypeBinary, body)
			if tc.want == "" {
				if resp.StatusCode != http.StatusOK {
					t.Errorf("status %d, want 200: %s", resp.StatusCode, b)
				}
				return
			}
			eb, err := wire.DecodeErrorBody(b)
			if resp.StatusCode != http.StatusBadRequest || err != nil || len(eb.Rejected) != 1 {
				t.Fatalf("status %d, want 400 naming the message: %s", resp.StatusCode, b)
			}
			if !strings.Contains(eb.Rejected[0].Reason, tc.want) {
				t.Errorf("reason %q lacks %q", eb.Rejected[0].Reason, tc.want)
			}
		})
	}
}

// TestInferScoresOutsideProbabilities: a head declared probabilities that
// emits logits gives no "confidence" outside [0, 1]: each such sample is
// rejected with a reason that names the fix, and the replica warns once,
// as soon as it has loaded the model (under `ddnn up` too); the shipped
// pipeline's softmax heads give no warning.
func TestInferScoresOutsideProbabilities(t *testing.T) {
	p, err := pipeline.Load("../models/testdata/f32/wrong-scores.yaml")
	if err != nil {
		t.Fatal(err)
	}
	logs := &testsupport.Buffer{}
	_, srv := newFunction(t, "edge", Config{Pipeline: p, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	const warning = `level=WARN msg="exit head declared scores: probabilities gives values outside [0, 1]; every record whose scores do is dead-lettered" output=exit_logits seen="probe input at start"`
	if !strings.Contains(logs.String(), warning) || !strings.Contains(logs.String(), `fix="if the model emits logits, set tiers[].exit.scores: logits"`) {
		t.Errorf("no warning once the model is loaded:\n%s", logs.String())
	}
	for range 2 {
		resp, body := post(t, srv.URL, wire.ContentTypeBinary, floatBody(t, filled(16, 1), filled(16, 5)))
		eb, err := wire.DecodeErrorBody(body)
		if resp.StatusCode != http.StatusBadRequest || err != nil || len(eb.Rejected) == 0 {
			t.Fatalf("status %d, want 400 naming the samples: %s", resp.StatusCode, body)
		}
		for _, r := range eb.Rejected {
			for _, want := range []string{`tier "edge": exit output "exit_logits" is declared scores: probabilities, but class `, "outside [0, 1]", "set tiers[].exit.scores: logits"} {
				if !strings.Contains(r.Reason, want) {
					t.Errorf("reason %q lacks %q", r.Reason, want)
				}
			}
		}
	}
	if n := strings.Count(logs.String(), "gives values outside [0, 1]"); n != 1 {
		t.Errorf("warned %d times, want once:\n%s", n, logs.String())
	}
	for _, tier := range []string{"edge", "fog", "cloud"} {
		shipped := &testsupport.Buffer{}
		newFunction(t, tier, Config{Logger: slog.New(slog.NewTextHandler(shipped, nil))})
		if strings.Contains(shipped.String(), "WARN") {
			t.Errorf("shipped tier %s warns:\n%s", tier, shipped.String())
		}
	}
	// Declared logits, the same model is served.
	p.Tiers[0].Exit.Scores = pipeline.ScoresLogits
	_, srv = newFunction(t, "edge", Config{Pipeline: p})
	resp, body := post(t, srv.URL, wire.ContentTypeBinary, floatBody(t, filled(16, 1), filled(16, 5)))
	if resp.StatusCode != http.StatusOK {
		t.Errorf("declared logits: status %d: %s", resp.StatusCode, body)
	}
}
