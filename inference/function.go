package inference

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ddnn-continuum/ddnn/internal/httpapi"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/telemetry"
	"github.com/ddnn-continuum/ddnn/internal/wire"
)

// Config is what a Function needs besides its session.
type Config struct {
	Pipeline *pipeline.Pipeline
	// Tier is the served tier's name.
	Tier string
	// Metrics records the function's work; nil records nothing.
	Metrics *Metrics
	// Logger, which should name the tier; nil discards.
	Logger *slog.Logger
	// Tracing records a span per traced message of each call; nil: off.
	Tracing *telemetry.Tracing
}

// Function serves one tier over HTTP: a batch of messages in, one decision
// per message out. It is ready once its session is set.
type Function struct {
	p      *pipeline.Pipeline
	tier   *pipeline.Tier
	index  int
	before []string // the names of the tiers before this one
	m      *Metrics
	log    *slog.Logger
	tr     *telemetry.Tracing // nil: off

	// policy is the tier's exit policy, swapped whole by Reload; a call
	// reads it once, so a reload takes effect from the next call on.
	policy atomic.Pointer[Policy]
	// reloadMu serialises reloads; applied is the tier as last applied.
	reloadMu sync.Mutex
	applied  pipeline.Tier
	labels   []string

	// What each message's tensor must be.
	wantDType wire.DType
	wantShape []int
	wantLen   int
	scale     float32

	session atomic.Pointer[Session]
	// warnedScores is set once a head declared probabilities gave values
	// outside [0, 1] and that was logged (at start by probeScores, or at
	// the first record rejected for it).
	warnedScores atomic.Bool
	// slots bounds concurrent batches when the emulation knob asks for it.
	slots chan struct{}
	bufs  sync.Pool // *[]float32 input batches
	bytes sync.Pool // *[]byte request and response bodies
}

func (f *Function) getBytes() *[]byte {
	if bp, ok := f.bytes.Get().(*[]byte); ok {
		return bp
	}
	return new([]byte)
}

// readBody reads r into buf, growing it once when the length is known.
func readBody(r io.Reader, length int64, buf []byte) ([]byte, error) {
	if length > 0 && int64(cap(buf)) < length+1 {
		buf = make([]byte, 0, length+1) // +1 so the final read sees EOF without growing
	}
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// New builds a function for cfg.Tier. It is not ready until SetSession.
func New(cfg Config) (*Function, error) {
	t, i, err := cfg.Pipeline.Tier(cfg.Tier)
	if err != nil {
		return nil, err
	}
	pol, err := NewPolicy(t.Exit, cfg.Pipeline.Last(i))
	if err != nil {
		return nil, fmt.Errorf("tier %q: %w", t.Name, err)
	}
	f := &Function{
		p:       cfg.Pipeline,
		tier:    t,
		index:   i,
		m:       cfg.Metrics,
		log:     cfg.Logger,
		tr:      cfg.Tracing,
		labels:  cfg.Pipeline.Classes,
		scale:   1,
		applied: *t,
	}
	f.policy.Store(&pol)
	if f.log == nil {
		f.log = slog.New(slog.DiscardHandler)
	}
	f.m.start(t.Name)
	if n := t.Inference.Emulate.MaxConcurrency; n > 0 {
		f.slots = make(chan struct{}, n)
	}
	for _, t := range cfg.Pipeline.Tiers[:i] {
		f.before = append(f.before, t.Name)
	}
	if i == 0 {
		f.wantDType = cfg.Pipeline.Input.DType
		f.wantShape = cfg.Pipeline.Input.Shape
		f.wantLen = wire.NumElements(f.wantShape)
		f.scale = float32(cfg.Pipeline.Input.Scale)
	}
	return f, nil
}

// SetSession makes the function ready with s. It checks that s fits what
// the function's callers send.
func (f *Function) SetSession(s *Session) error {
	if f.index == 0 {
		if s.InputLen() != f.wantLen {
			return fmt.Errorf("tier %q: pipeline input.shape %v has %d elements, model input %q has per-sample shape %v (%d elements)",
				f.tier.Name, f.wantShape, f.wantLen, s.InputName, s.InputShape, s.InputLen())
		}
	} else {
		f.wantDType = wire.Float32
		f.wantShape = intShape(s.InputShape)
		f.wantLen = s.InputLen()
	}
	if s.Classes != len(f.labels) {
		return fmt.Errorf("tier %q: exit head has %d classes, pipeline names %d", f.tier.Name, s.Classes, len(f.labels))
	}
	f.probeScores(s)
	f.session.Store(s)
	f.m.serving(f.tier.Name, s.Model.String())
	return nil
}

// probeScores runs a few made-up samples (all 0, all 1, and values drawn
// in [0, 1) from a fixed seed) through s when the exit head is declared
// probabilities, and warns when a score falls outside [0, 1]: the head
// most likely emits logits, and the function would reject every record
// whose scores do. A head that does emit probabilities (a softmax or a
// sigmoid) never warns; one that emits logits may pass the probe by
// chance, and is then warned about at the first record it rejects.
func (f *Function) probeScores(s *Session) {
	pol := f.policy.Load()
	if pol.Logits {
		return
	}
	const samples = 3
	n := s.InputLen()
	in := make([]float32, samples*n)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range n {
		in[n+i] = 1
		in[2*n+i] = rng.Float32()
	}
	out, err := s.Run(in, samples)
	if err != nil {
		f.log.Debug("score probe", "err", err)
		return
	}
	for i := range samples {
		scores := out.Exit[i*s.Classes : (i+1)*s.Classes]
		if err := pol.CheckScores(scores); errors.Is(err, ErrNotProbabilities) {
			f.warnedScores.Store(true)
			f.log.Warn(scoresWarning, "output", f.tier.Exit.Output, "seen", "probe input at start",
				"min", slices.Min(scores), "max", slices.Max(scores), "fix", scoresFix)
			return
		}
	}
}

// Ready reports whether the model is loaded.
func (f *Function) Ready() bool { return f.session.Load() != nil }

// Handler serves httpapi.PathInfer, /healthz and /readyz.
func (f *Function) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc(httpapi.PathInfer, f.serveInfer)
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !f.Ready() {
			http.Error(w, "model loading", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ready\n")
	})
	return mux
}

// Outcomes label the requests counter.
const (
	outcomeOK          = "ok"
	outcomeBadRequest  = "bad_request"
	outcomeNotAccepted = "not_accepted"
	outcomeTooLarge    = "too_large"
	outcomeUnsupported = "unsupported_media_type"
	outcomeUnavailable = "unavailable"
	outcomeError       = "error"
	outcomeMethod      = "method_not_allowed"
)

func (f *Function) fail(w http.ResponseWriter, code int, outcome string, body wire.ErrorBody) {
	f.m.request(f.tier.Name, outcome)
	httpapi.WriteError(w, code, &body)
}

func (f *Function) serveInfer(w http.ResponseWriter, r *http.Request) {
	var start time.Time
	if f.tr.Enabled() {
		start = time.Now()
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		f.fail(w, http.StatusMethodNotAllowed, outcomeMethod, wire.ErrorBody{Error: "use POST"})
		return
	}
	enc, err := wire.EncodingFor(r.Header.Get("Content-Type"))
	if err != nil {
		f.fail(w, http.StatusUnsupportedMediaType, outcomeUnsupported, wire.ErrorBody{Error: err.Error()})
		return
	}
	sess := f.session.Load()
	if sess == nil {
		f.fail(w, http.StatusServiceUnavailable, outcomeUnavailable, wire.ErrorBody{Error: "model loading"})
		return
	}
	limit := f.tier.Inference.MaxRequestBytes
	if r.ContentLength > limit {
		f.fail(w, http.StatusRequestEntityTooLarge, outcomeTooLarge,
			wire.ErrorBody{Error: fmt.Sprintf("request body of %d bytes over the limit of %d bytes (tiers[].inference.max_request_bytes)", r.ContentLength, limit)})
		return
	}
	bp := f.getBytes()
	defer f.bytes.Put(bp)
	body, err := readBody(http.MaxBytesReader(w, r.Body, limit), r.ContentLength, (*bp)[:0])
	*bp = body
	if err != nil {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			f.fail(w, http.StatusRequestEntityTooLarge, outcomeTooLarge,
				wire.ErrorBody{Error: fmt.Sprintf("request body over the limit of %d bytes (tiers[].inference.max_request_bytes)", limit)})
			return
		}
		f.fail(w, http.StatusBadRequest, outcomeBadRequest, wire.ErrorBody{Error: "reading body: " + err.Error()})
		return
	}
	msgs, err := wire.DecodeMessages(enc, body)
	if err != nil {
		f.fail(w, http.StatusBadRequest, outcomeBadRequest, wire.ErrorBody{Error: err.Error()})
		return
	}
	if len(msgs) == 0 {
		f.fail(w, http.StatusBadRequest, outcomeBadRequest, wire.ErrorBody{Error: "empty batch: send at least one message"})
		return
	}
	if max := f.tier.Inference.MaxBatch; len(msgs) > max {
		f.fail(w, http.StatusRequestEntityTooLarge, outcomeTooLarge,
			wire.ErrorBody{Error: fmt.Sprintf("batch of %d messages over max_batch %d", len(msgs), max)})
		return
	}
	if p := r.Header.Get(httpapi.HeaderProducer); p != "" {
		producer, err := wire.ParseModelVersion(p)
		if err != nil {
			f.fail(w, http.StatusBadRequest, outcomeBadRequest, wire.ErrorBody{Error: httpapi.HeaderProducer + ": " + err.Error()})
			return
		}
		if why := f.refuses(sess, producer, msgs); why != "" {
			f.fail(w, httpapi.StatusNotAccepted, outcomeNotAccepted, wire.ErrorBody{Error: why})
			return
		}
	}
	if rej := f.Check(msgs); len(rej) > 0 {
		f.fail(w, http.StatusBadRequest, outcomeBadRequest, wire.ErrorBody{
			Error:    fmt.Sprintf("%d of %d messages rejected", len(rej), len(msgs)),
			Rejected: rej,
		})
		return
	}
	if f.slots != nil {
		select {
		case f.slots <- struct{}{}:
			defer func() { <-f.slots }()
		case <-r.Context().Done():
			f.fail(w, http.StatusServiceUnavailable, outcomeUnavailable, wire.ErrorBody{Error: "canceled while queued"})
			return
		}
	}
	if d := f.tier.Inference.Emulate.ServiceTimePerSample; d > 0 {
		// Benchmark knob: behave like a heavier model on a slower node.
		time.Sleep(time.Duration(len(msgs)) * d)
	}
	ds, rej, err := f.Infer(sess, msgs)
	if err != nil {
		f.log.Error("inference", "err", err)
		f.fail(w, http.StatusInternalServerError, outcomeError, wire.ErrorBody{Error: err.Error()})
		return
	}
	if len(rej) > 0 {
		// The records' fault, not the replica's: the caller parks these
		// and sends the rest again.
		f.fail(w, http.StatusBadRequest, outcomeBadRequest, wire.ErrorBody{
			Error:    fmt.Sprintf("%d of %d messages rejected", len(rej), len(msgs)),
			Rejected: rej,
		})
		return
	}
	op := f.getBytes()
	defer f.bytes.Put(op)
	out, err := wire.AppendDecisions((*op)[:0], enc, ds)
	*op = out
	if err != nil {
		f.fail(w, http.StatusInternalServerError, outcomeError, wire.ErrorBody{Error: err.Error()})
		return
	}
	f.m.request(f.tier.Name, outcomeOK)
	if f.tr.Enabled() {
		f.traceDecisions(w, r, sess.Model.SHA, msgs, ds, start)
	}
	w.Header().Set("Content-Type", enc.ContentType())
	w.Header().Set("Content-Length", strconv.Itoa(len(out)))
	w.Header().Set(httpapi.HeaderModel, sess.Model.String())
	w.Write(out)
}

// Accepts says whether a tier's model reads forwards that producer, a
// model of the previous tier, wrote: those a tier's accepts (refs) names
// when it has any, else those that fit its input (fits). A replica
// decides with it per call, and `ddnn up` before a rollout.
func Accepts(refs []string, producer wire.ModelVersion, fits bool) bool {
	if len(refs) > 0 {
		return slices.ContainsFunc(refs, producer.Matches)
	}
	return fits
}

// refuses says why the tier's model does not accept forwards producer
// wrote (Accepts), "" when it does. A forward is then never fed to the
// model: the connector takes it to a replica that accepts it.
func (f *Function) refuses(sess *Session, producer wire.ModelVersion, msgs []wire.Message) string {
	// A call's forwards share their producer, so its first tells whether
	// they fit; a later one that does not is that record's fault, which
	// Check reports.
	t := &msgs[0].Tensor
	fits := t.DType == f.wantDType && t.Len() == f.wantLen
	switch refs := f.tier.Accepts; {
	case Accepts(refs, producer, fits):
		return ""
	case len(refs) > 0:
		return fmt.Sprintf("tier %q model %s accepts forwards of %s (accepts), not of %s",
			f.tier.Name, sess.Model, strings.Join(refs, ", "), producer)
	default:
		return fmt.Sprintf("tier %q model %s takes %s %v, forwards of %s are %s %v",
			f.tier.Name, sess.Model, f.wantDType, f.wantShape, producer, t.DType, t.Shape)
	}
}

// Check validates every message against what the tier takes: its tensor,
// and its hops (see checkHops); each rejection names the message and the
// reason.
func (f *Function) Check(msgs []wire.Message) []wire.Rejection {
	var rej []wire.Rejection
	for i := range msgs {
		t := &msgs[i].Tensor
		var reason string
		switch {
		case t.DType != f.wantDType:
			reason = fmt.Sprintf("tensor dtype %s, tier %q takes %s %v", t.DType, f.tier.Name, f.wantDType, f.wantShape)
		case t.Len() != f.wantLen:
			reason = fmt.Sprintf("tensor has %d elements (shape %v), tier %q takes %d: shape %v", t.Len(), t.Shape, f.tier.Name, f.wantLen, f.wantShape)
		default:
			if err := t.Validate(); err != nil {
				reason = err.Error()
			} else if err := f.checkHops(msgs[i].Hops); err != nil {
				reason = err.Error()
			}
		}
		if reason != "" {
			rej = append(rej, wire.Rejection{Index: i, ID: msgs[i].ID, Reason: reason})
		}
	}
	return rej
}

// checkHops refuses hops that no pipeline run can have made: each tier's
// function adds one hop, so a message reaching tier i carries at most i,
// naming tiers before this one in pipeline order. This bounds what a
// forged record makes the pipeline copy into its forwards and results.
func (f *Function) checkHops(hops []wire.Hop) error {
	if len(hops) > len(f.before) {
		return fmt.Errorf("hops: %d given, a message reaching tier %q has passed at most %d tiers (%s)",
			len(hops), f.tier.Name, len(f.before), strings.Join(f.before, ", "))
	}
	prev := -1
	for k, h := range hops {
		j := slices.Index(f.before, h.Tier)
		if j <= prev {
			return fmt.Errorf("hops: hop %d names tier %q, not one of the tiers before %q in pipeline order (%s)",
				k, h.Tier, f.tier.Name, strings.Join(f.before, ", "))
		}
		prev = j
	}
	return nil
}

// Infer runs checked messages through sess and applies the exit policy to
// each sample. Forwarded decisions carry the forward tensor.
//
// A sample whose model output cannot be reported is not decided but
// rejected, with the reason: an exit score or (when it would forward) a
// forward element that is not finite, which the record caused (a finite
// input can still overflow the model), or an exit score outside [0, 1]
// from a head declared scores: probabilities. Its decision is left
// zero; callers dead-letter it (the HTTP handler answers 400 naming it,
// so the connector parks it at once and sends the rest again).
func (f *Function) Infer(sess *Session, msgs []wire.Message) ([]wire.Decision, []wire.Rejection, error) {
	n := len(msgs)
	bp, _ := f.bufs.Get().(*[]float32)
	if bp == nil {
		bp = new([]float32)
	}
	in := (*bp)[:0]
	for i := range msgs {
		in = msgs[i].Tensor.AppendFloat32s(in, f.scale)
	}
	start := time.Now()
	out, err := sess.Run(in, n)
	elapsed := time.Since(start)
	*bp = in
	f.bufs.Put(bp)
	if err != nil {
		return nil, nil, err
	}
	f.m.batch(f.tier.Name, n, elapsed)

	ds := make([]wire.Decision, n)
	fwdShape := intShape(sess.ForwardShape) // shared by the batch's forwards
	var rej []wire.Rejection
	var scratch [64]float64
	exits := 0
	pol := f.policy.Load()
	for i := range msgs {
		scores := out.Exit[i*sess.Classes : (i+1)*sess.Classes]
		if err := pol.CheckScores(scores); err != nil {
			rej = append(rej, wire.Rejection{Index: i, ID: msgs[i].ID, Reason: f.scoresReason(scores, err)})
			continue
		}
		v := pol.Decide(scores, scratch[:])
		d := wire.Decision{ID: msgs[i].ID, Tier: f.tier.Name, Exit: v.Exit, Class: v.Class, Confidence: v.Confidence}
		if v.Exit {
			d.Label = f.labels[v.Class]
			exits++
		} else {
			fwd := out.Forward[i*sess.ForwardLen : (i+1)*sess.ForwardLen]
			if j, name, bad := nonFinite(fwd); bad {
				rej = append(rej, wire.Rejection{Index: i, ID: msgs[i].ID, Reason: fmt.Sprintf(
					"tier %q: model output %q is not finite for this record (element %d is %s)", f.tier.Name, f.tier.Forward.Output, j, name)})
				continue
			}
			// The answer copies the model's output once, as bytes.
			fw := wire.Float32TensorOf(fwdShape, fwd)
			d.Forward = &fw
		}
		ds[i] = d
	}
	f.m.decisions(f.tier.Name, exits, n-exits-len(rej))
	return ds, rej, nil
}

// scoresReason is the rejection reason of a sample whose exit scores
// failed CheckScores. The first sample of a head declared probabilities
// that are not also logs a warning: the whole pipeline is misconfigured,
// not just the record.
func (f *Function) scoresReason(scores []float32, err error) string {
	if !errors.Is(err, ErrNotProbabilities) {
		return fmt.Sprintf("tier %q: model output %q is not finite for this record (%v)", f.tier.Name, f.tier.Exit.Output, err)
	}
	reason := fmt.Sprintf("tier %q: exit output %q is declared scores: probabilities, but %v (min %.4g, max %.4g); no confidence is reported from it: %s",
		f.tier.Name, f.tier.Exit.Output, strings.TrimSuffix(err.Error(), ": "+ErrNotProbabilities.Error()), slices.Min(scores), slices.Max(scores), scoresFix)
	if f.warnedScores.CompareAndSwap(false, true) {
		f.log.Warn(scoresWarning, "output", f.tier.Exit.Output, "seen", "record",
			"min", slices.Min(scores), "max", slices.Max(scores), "fix", scoresFix)
	}
	return reason
}

// The warning about a head declared probabilities that emits other values.
const (
	scoresWarning = "exit head declared scores: probabilities gives values outside [0, 1]; every record whose scores do is dead-lettered"
	scoresFix     = "if the model emits logits, set tiers[].exit.scores: logits"
)

func intShape(s []int64) []int {
	out := make([]int, len(s))
	for i, d := range s {
		out[i] = int(d)
	}
	return out
}
