package records

import (
	"strings"
	"testing"
	"time"

	"github.com/ddnn-continuum/ddnn/internal/wire"
	"github.com/twmb/franz-go/pkg/kgo"
)

func hopOf(tier string, exit bool) Hop {
	return Hop{Tier: tier, Replica: "127.0.0.1:40123", Model: wire.ModelVersion{SHA: "0123456789ab"}, HopDecision: HopDecision{Confidence: 0.9731, Exit: exit,
		FetchedAt: time.UnixMilli(1765107000123).UTC(), KafkaWait: 1234 * time.Microsecond, Service: 5678 * time.Microsecond}}
}

// addHop adds h to rec as a call's HopAppender does.
func addHop(rec, from *kgo.Record, carry bool, h *Hop) {
	NewHopAppender(h.Tier, h.Replica, h.Model, 1).Add(rec, from, carry, &h.HopDecision)
}

// TestHopsCarriedAndRead: each tier's hop is added after those of the
// record it read, and reads back as written.
func TestHopsCarriedAndRead(t *testing.T) {
	in := &kgo.Record{}
	edge, fog := hopOf("edge", false), hopOf("fog", true)
	fwd := &kgo.Record{}
	addHop(fwd, in, true, &edge)
	res := &kgo.Record{}
	addHop(res, fwd, true, &fog)
	hs, err := ReadHops(res)
	if err != nil {
		t.Fatal(err)
	}
	if len(hs) != 2 || hs[0] != edge || hs[1] != fog {
		t.Fatalf("read %+v, want %+v then %+v", hs, edge, fog)
	}
	t.Logf("header of one hop: %d bytes (%q), two: %d", len(HeaderHops)+len(Header(fwd, HeaderHops)), Header(fwd, HeaderHops), len(HeaderHops)+len(Header(res, HeaderHops)))
}

// TestHopsCarryModelVersions: each hop keeps its model's sha and version
// label, labeled or not, as it is carried from tier to tier; the label
// costs its length and one byte per hop.
func TestHopsCarryModelVersions(t *testing.T) {
	edge, fog, cloud := hopOf("edge", false), hopOf("fog", false), hopOf("cloud", true)
	edge.Model.Version = "v2"
	cloud.Model = wire.ModelVersion{SHA: "fedcba987654", Version: "2026-12.retrain_3"}
	in, fwd, fwd2, res := &kgo.Record{}, &kgo.Record{}, &kgo.Record{}, &kgo.Record{}
	addHop(fwd, in, true, &edge)
	addHop(fwd2, fwd, true, &fog)
	addHop(res, fwd2, true, &cloud)
	hs, err := ReadHops(res)
	if err != nil {
		t.Fatal(err)
	}
	if len(hs) != 3 || hs[0] != edge || hs[1] != fog || hs[2] != cloud {
		t.Fatalf("read %+v, want %+v, %+v, %+v", hs, edge, fog, cloud)
	}
	unlabeled := &kgo.Record{}
	plain := edge
	plain.Model.Version = ""
	addHop(unlabeled, in, true, &plain)
	added := len(Header(fwd, HeaderHops)) - len(Header(unlabeled, HeaderHops))
	if added != len("@v2") {
		t.Errorf("label v2 added %d bytes to the hop, want %d", added, len("@v2"))
	}
	t.Logf("hop without a label: %d bytes (%q); label v2 adds %d", len(Header(unlabeled, HeaderHops)), Header(unlabeled, HeaderHops), added)
}

// TestLastHopModel: a forward's producer is the model of its last hop,
// read as ReadHops reads it; none without hops or with a damaged one.
func TestLastHopModel(t *testing.T) {
	edge, fog := hopOf("edge", false), hopOf("fog", false)
	edge.Model.Version = "v2"
	fog.Model = wire.ModelVersion{SHA: "fedcba987654", Version: "w48"}
	in, fwd, fwd2 := &kgo.Record{}, &kgo.Record{}, &kgo.Record{}
	addHop(fwd, in, true, &edge)
	addHop(fwd2, fwd, true, &fog)
	if got := LastHopModel(fwd); got != edge.Model {
		t.Errorf("one hop: %+v, want %+v", got, edge.Model)
	}
	if got := LastHopModel(fwd2); got != fog.Model {
		t.Errorf("two hops: %+v, want %+v", got, fog.Model)
	}
	for _, v := range []string{"", "edge", "edge,r", "edge,r,NOT HEX,0.5,f,1,2,3"} {
		r := &kgo.Record{Headers: []kgo.RecordHeader{{Key: HeaderHops, Value: []byte(v)}}}
		if got := LastHopModel(r); !got.IsZero() {
			t.Errorf("header %q: %+v, want none", v, got)
		}
	}
}

// TestReadHopsWrittenBeforeLabels: a header written before hops carried a
// version label (and one whose replica named no model) reads, each hop
// with its sha and no label.
func TestReadHopsWrittenBeforeLabels(t *testing.T) {
	const old = "edge,127.0.0.1%3A40123,0123456789ab,0.5123,f,1765107000123,1234,5678;fog,127.0.0.1%3A40124,,0.9731,e,1765107000130,20,300"
	rec := &kgo.Record{Headers: []kgo.RecordHeader{{Key: HeaderHops, Value: []byte(old)}}}
	hs, err := ReadHops(rec)
	if err != nil {
		t.Fatal(err)
	}
	if len(hs) != 2 || hs[0].Model != (wire.ModelVersion{SHA: "0123456789ab"}) || !hs[1].Model.IsZero() ||
		hs[0].Replica != "127.0.0.1:40123" || !hs[1].Exit || hs[1].Service != 300*time.Microsecond {
		t.Fatalf("read %+v", hs)
	}
	// A connector carries it on, adding its labeled hop after.
	next := &kgo.Record{}
	cloud := hopOf("cloud", true)
	cloud.Model.Version = "v3"
	addHop(next, rec, true, &cloud)
	hs, err = ReadHops(next)
	if err != nil || len(hs) != 3 || hs[2] != cloud || hs[0].Model.Version != "" {
		t.Fatalf("carried: %+v, %v", hs, err)
	}
}

// TestHopsBounded: the header keeps the last MaxHops hops, carries nothing
// from a record it must not trust (carry false) or that is too long, and
// bounds what a replica's address may add.
func TestHopsBounded(t *testing.T) {
	rec := &kgo.Record{}
	for i := range MaxHops + 3 {
		next := &kgo.Record{}
		h := hopOf(strings.Repeat("t", i+1), false)
		h.Model = wire.ModelVersion{SHA: strings.Repeat("a", wire.MaxModelSHALen), Version: strings.Repeat("v", wire.MaxModelVersionLen)}
		addHop(next, rec, true, &h)
		rec = next
	}
	hs, err := ReadHops(rec)
	if err != nil {
		t.Fatal(err)
	}
	if len(hs) != MaxHops || hs[0].Tier != strings.Repeat("t", 4) || hs[MaxHops-1].Tier != strings.Repeat("t", MaxHops+3) {
		t.Fatalf("kept %d hops from %q to %q, want the last %d", len(hs), hs[0].Tier, hs[len(hs)-1].Tier, MaxHops)
	}
	if n := len(Header(rec, HeaderHops)); n > maxHopsBytes {
		t.Errorf("header of %d bytes over %d", n, maxHopsBytes)
	}

	forged := &kgo.Record{Headers: []kgo.RecordHeader{{Key: HeaderHops, Value: []byte("x,y,z,1,e,1,1,1")}}}
	long := &kgo.Record{Headers: []kgo.RecordHeader{{Key: HeaderHops, Value: []byte(strings.Repeat("a", maxHopsBytes+1))}}}
	for name, tc := range map[string]struct {
		from  *kgo.Record
		carry bool
	}{"not carried": {forged, false}, "too long": {long, true}} {
		out := &kgo.Record{}
		h := hopOf("edge", true)
		h.Replica = strings.Repeat("r,", 100)
		addHop(out, tc.from, tc.carry, &h)
		hs, err := ReadHops(out)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(hs) != 1 || hs[0].Tier != "edge" || len(hs[0].Replica) > maxFieldBytes {
			t.Errorf("%s: read %+v, want edge's hop alone with a bounded replica", name, hs)
		}
	}
}

// TestReadHopsRefusesDamage: a header that does not read is an error
// naming the hop and the field.
func TestReadHopsRefusesDamage(t *testing.T) {
	for _, v := range []string{"edge,r,m,0.5,e,1,2", "edge,r,0a@v%202,0.5,e,1,2,3", "edge,r,0a@,0.5,e,1,2,3", "edge,r,m,NaN,e,1,2,3", "edge,r,m,0.5,x,1,2,3", "edge,r,m,0.5,e,now,2,3", "edge,r%zz,m,0.5,e,1,2,3"} {
		r := &kgo.Record{Headers: []kgo.RecordHeader{{Key: HeaderHops, Value: []byte(v)}}}
		if _, err := ReadHops(r); err == nil || !strings.Contains(err.Error(), "hop 0") {
			t.Errorf("%q: err %v, want one naming hop 0", v, err)
		}
	}
}

// BenchmarkAddHop: the hops a connector adds to the 64 records the
// decisions of one call become, each after the hop the record it read
// carried.
func BenchmarkAddHop(b *testing.B) {
	from := &kgo.Record{}
	first := hopOf("edge", false)
	addHop(from, &kgo.Record{}, false, &first)
	h := hopOf("fog", true)
	recs := make([]kgo.Record, 64)
	b.ReportAllocs()
	for b.Loop() {
		a := NewHopAppender(h.Tier, h.Replica, h.Model, len(recs))
		for i := range recs {
			recs[i].Headers = recs[i].Headers[:0]
			a.Add(&recs[i], from, true, &h.HopDecision)
		}
	}
}

// TestHopAppenderKeepsValuesApart: the records of one call share the
// appender's buffer, yet each keeps its own hops, also when the buffer
// grows.
func TestHopAppenderKeepsValuesApart(t *testing.T) {
	a := NewHopAppender("fog", "127.0.0.1:1", wire.ModelVersion{SHA: "0a"}, 1)
	var recs []*kgo.Record
	for i := range 20 {
		from := &kgo.Record{}
		prior := hopOf(strings.Repeat("e", i+1), false)
		addHop(from, nil, false, &prior)
		rec := &kgo.Record{}
		a.Add(rec, from, true, &HopDecision{Confidence: float32(i), Exit: true})
		recs = append(recs, rec)
	}
	for i, rec := range recs {
		hs, err := ReadHops(rec)
		if err != nil {
			t.Fatal(err)
		}
		if len(hs) != 2 || hs[0].Tier != strings.Repeat("e", i+1) || hs[1].Tier != "fog" || hs[1].Confidence != float32(i) {
			t.Errorf("record %d: hops %+v", i, hs)
		}
	}
}

// BenchmarkLastHopModel is what reading a forward's producer costs the
// connector per record: a scan of its hops header's last hop.
func BenchmarkLastHopModel(b *testing.B) {
	edge, fog := hopOf("edge", false), hopOf("fog", false)
	edge.Model.Version = "v2"
	in, fwd, fwd2 := &kgo.Record{}, &kgo.Record{}, &kgo.Record{}
	addHop(fwd, in, true, &edge)
	addHop(fwd2, fwd, true, &fog)
	b.ReportAllocs()
	for b.Loop() {
		if LastHopModel(fwd2).IsZero() {
			b.Fatal("no model")
		}
	}
}
