package status

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// maxMetricsBytes bounds one /metrics answer read (ddnn up's holds every
// child's series: a few hundred KiB).
const maxMetricsBytes = 32 << 20

// metricSet is the series of every answer read at one time, by metric
// name: the metrics of several admin addresses (ddnn up's, or the roles'
// run apart) merged. Series are told apart by their labels (tier, or from
// and to for a link), which every ddnn part sets.
type metricSet map[string][]*dto.Metric

// add merges fams into s.
func (s metricSet) add(fams map[string]*dto.MetricFamily) {
	for name, f := range fams {
		s[name] = append(s[name], f.Metric...)
	}
}

// labels are the label values a series must have.
type labels map[string]string

func (l labels) match(m *dto.Metric) bool {
	n := 0
	for _, lp := range m.Label {
		if v, ok := l[lp.GetName()]; ok {
			if v != lp.GetValue() {
				return false
			}
			n++
		}
	}
	return n == len(l)
}

// series are name's series that have l's labels.
func (s metricSet) series(name string, l labels) []*dto.Metric {
	var out []*dto.Metric
	for _, m := range s[name] {
		if l.match(m) {
			out = append(out, m)
		}
	}
	return out
}

// labelValues are the values of label key in name's series with l's
// labels and a value of 1, sorted and each once (an info metric's).
func (s metricSet) labelValues(name string, l labels, key string) []string {
	out := []string{}
	for _, m := range s.series(name, l) {
		if m.GetGauge().GetValue() != 1 {
			continue
		}
		for _, lp := range m.Label {
			if lp.GetName() == key && !slices.Contains(out, lp.GetValue()) {
				out = append(out, lp.GetValue())
			}
		}
	}
	slices.Sort(out)
	return out
}

// has reports whether name has a series with l's labels.
func (s metricSet) has(name string, l labels) bool { return len(s.series(name, l)) > 0 }

// value is a counter's, gauge's or untyped series' value.
func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Untyped != nil:
		return m.Untyped.GetValue()
	}
	return math.NaN()
}

// sum adds the values of name's series with l's labels (the processes of
// one tier, the kinds of its decisions); ok is false without any.
func (s metricSet) sum(name string, l labels) (total float64, ok bool) {
	for _, m := range s.series(name, l) {
		total += value(m)
		ok = true
	}
	return total, ok
}

// max is the largest value of name's series with l's labels.
func (s metricSet) max(name string, l labels) (high float64, ok bool) {
	for _, m := range s.series(name, l) {
		if v := value(m); !ok || v > high {
			high, ok = v, true
		}
	}
	return high, ok
}

// minPositive is the smallest value above 0 of name's series with l's
// labels.
func (s metricSet) minPositive(name string, l labels) (low float64, ok bool) {
	for _, m := range s.series(name, l) {
		if v := value(m); v > 0 && (!ok || v < low) {
			low, ok = v, true
		}
	}
	return low, ok
}

// histogram is a histogram's cumulative bucket counts by upper bound
// (+Inf last), summed over its series.
type histogram struct {
	bounds []float64
	counts []float64
	total  float64
}

// histogram sums name's histogram series with l's labels.
func (s metricSet) histogram(name string, l labels) histogram {
	var h histogram
	byBound := map[float64]float64{}
	for _, m := range s.series(name, l) {
		if m.Histogram == nil {
			continue
		}
		h.total += float64(m.Histogram.GetSampleCount())
		for _, b := range m.Histogram.Bucket {
			byBound[b.GetUpperBound()] += float64(b.GetCumulativeCount())
		}
	}
	byBound[math.Inf(1)] = h.total
	for b := range byBound {
		h.bounds = append(h.bounds, b)
	}
	slices.Sort(h.bounds)
	for _, b := range h.bounds {
		h.counts = append(h.counts, byBound[b])
	}
	return h
}

// since is what h counted after earlier: the observations between two
// reads. A count that went down (a process restarted) is taken as it is.
func (h histogram) since(earlier histogram) histogram {
	if earlier.total > h.total {
		return h
	}
	prev := map[float64]float64{}
	for i, b := range earlier.bounds {
		prev[b] = earlier.counts[i]
	}
	d := histogram{bounds: h.bounds, total: h.total - earlier.total}
	for i, b := range h.bounds {
		d.counts = append(d.counts, max(h.counts[i]-prev[b], 0))
	}
	return d
}

// quantile is the q-quantile of h, interpolated linearly inside its
// bucket as Prometheus' histogram_quantile does; nil without any
// observation. One in the +Inf bucket is reported as the highest finite
// bound.
func (h histogram) quantile(q float64) *float64 {
	if h.total <= 0 || len(h.bounds) < 2 {
		return nil
	}
	rank := q * h.total
	i, _ := slices.BinarySearchFunc(h.counts, rank, func(c, r float64) int {
		switch {
		case c < r:
			return -1
		case c > r:
			return 1
		}
		return 0
	})
	if i >= len(h.bounds)-1 { // the +Inf bucket
		v := h.bounds[len(h.bounds)-2]
		return &v
	}
	lower, below := 0.0, 0.0
	if i > 0 {
		lower, below = h.bounds[i-1], h.counts[i-1]
	}
	in := h.counts[i] - below
	v := h.bounds[i]
	if in > 0 {
		v = lower + (h.bounds[i]-lower)*(rank-below)/in
	}
	return &v
}

// readMetrics reads the Prometheus text at url with client.
func readMetrics(ctx context.Context, client *http.Client, url string) (map[string]*dto.MetricFamily, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, brief(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, io.LimitReader(resp.Body, maxMetricsBytes))
		return nil, fmt.Errorf("answered %s", resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(io.LimitReader(resp.Body, maxMetricsBytes))
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	return fams, nil
}

// brief drops the method and URL net/http wraps a transport error in
// (the caller names what it asked), keeping why it failed.
func brief(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return errors.New("no answer in time")
	}
	return err
}

// dialable is addr (host:port) as a client reaches it: an unspecified
// host (0.0.0.0, [::], empty) is served on loopback too.
func dialable(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		return net.JoinHostPort("127.0.0.1", port)
	}
	return addr
}

// baseURL is addr as an http:// URL, unless it already is a URL.
func baseURL(addr string) string {
	if strings.Contains(addr, "://") {
		return strings.TrimSuffix(addr, "/")
	}
	return "http://" + dialable(addr)
}
