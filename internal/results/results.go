// Package results reads a pipeline's results topic for a person at a
// terminal (ddnn results): which results to read (the newest, those of one
// message id, new ones as they arrive) and how they are printed, as a table
// or one JSON object per line, with the strings of records escaped for a
// terminal. A followed read says when it loses the broker, and when it is
// back.
//
// What a read holds at once does not grow with the topic: the Kafka
// client's fetches are bounded (kafka.ReadFetchLimits), a table is printed a chunk
// of rows at a time (printer) and --last keeps only the newest N
// (newest.go).
//
// It only consumes: it commits no offsets, joins no group and never writes
// to Kafka. Before consuming it asks the brokers for the topic's offsets
// within a short timeout, so that a broker that is down or a topic that
// does not exist is an error at once rather than a silent wait.
package results

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ddnn-continuum/ddnn/internal/kafka"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/wire"
)

// ErrNoBroker is the error of a Read that reached none of the brokers
// within the connect timeout.
var ErrNoBroker = errors.New("no Kafka broker reachable")

// Config says which results Read prints and how.
type Config struct {
	// Kafka is the Kafka the results topic lives on (the results site's).
	Kafka pipeline.Kafka
	Topic string
	// Follow keeps reading results as they arrive, from the end of the
	// topic unless FromBeginning or Last say otherwise, until ctx ends or
	// Count results were printed.
	Follow bool
	// FromBeginning starts at the oldest result there is; it is how Read
	// starts without Follow anyway.
	FromBeginning bool
	// Last, when positive, prints the Last newest results over all
	// partitions (by record timestamp), oldest first; with Follow, new
	// ones follow them.
	Last int
	// ID, when set, prints only the results of that message id.
	ID string
	// Count, when positive, stops after Count results were printed.
	// Without Follow and Count, Read stops at the end the topic had when
	// it started.
	Count int
	// Timeout bounds a read without Follow (default 10s); reaching it
	// before Count results, or before the end of the topic, is an error.
	Timeout time.Duration
	// ConnectTimeout bounds the first answer from the brokers (default
	// 5s).
	ConnectTimeout time.Duration
	// StallAfter is, with Follow, how long no fetch may be answered before
	// the broker is said to be lost (default 15s, three times the fetch
	// wait); see watch.go.
	StallAfter time.Duration
	// JSON prints one JSON result per line instead of a table.
	JSON bool
	// Out gets the results; Warn (nil: discarded) the records that are
	// not results.
	Out, Warn io.Writer
}

// Validate reports every setting that is wrong or contradicts another,
// naming them as ddnn results' flags.
func (c *Config) Validate() error {
	var errs []error
	if c.Topic == "" {
		errs = append(errs, errors.New("no results topic"))
	}
	if c.Count < 0 {
		errs = append(errs, fmt.Errorf("--count %d: want 0 (no limit) or more", c.Count))
	}
	if c.Last < 0 {
		errs = append(errs, fmt.Errorf("--last %d: want 1 or more", c.Last))
	}
	if c.Last > 0 && c.FromBeginning {
		errs = append(errs, errors.New("--last and --from-beginning both say where to start: give one"))
	}
	if c.Last > 0 && c.Count > 0 {
		errs = append(errs, errors.New("--last prints the newest N and --count stops after N: give one"))
	}
	if c.Last > 0 && c.ID != "" {
		errs = append(errs, errors.New("--last reads the newest N records and --id searches them all: give one"))
	}
	if c.Timeout < 0 {
		errs = append(errs, fmt.Errorf("--timeout %s: want a positive duration", c.Timeout))
	}
	if c.Out == nil {
		errs = append(errs, errors.New("no output"))
	}
	return errors.Join(errs...)
}

// Read prints the results cfg asks for, until they were all printed, the
// timeout passed (without Follow) or ctx ended (with Follow; not an
// error).
func Read(ctx context.Context, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	cfg.Timeout = cmp.Or(cfg.Timeout, 10*time.Second)
	cfg.ConnectTimeout = cmp.Or(cfg.ConnectTimeout, 5*time.Second)
	if cfg.Warn == nil {
		cfg.Warn = io.Discard
	}
	bounds, err := partitionBounds(ctx, &cfg) // within cfg.ConnectTimeout
	if err != nil {
		return err
	}
	if !cfg.Follow {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.Timeout)
		defer cancel()
	}
	// Where each partition starts, and the end it had (until) for a read
	// that stops there: one without Follow or Count, and the tail of Last.
	starts := make(map[int32]kgo.Offset, len(bounds))
	var until map[int32]int64
	if cfg.Last > 0 || (!cfg.Follow && cfg.Count == 0) {
		until = map[int32]int64{}
	}
	for p, b := range bounds {
		from := b.start
		switch {
		case cfg.Last > 0:
			from = max(b.start, b.end-int64(cfg.Last))
		case cfg.Follow && !cfg.FromBeginning:
			from = b.end
		}
		starts[p] = kgo.NewOffset().At(from)
		if until != nil && b.end > from {
			until[p] = b.end
		}
	}
	opts := append(kafka.ReadFetchLimits(), kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{cfg.Topic: starts}))
	var watch *brokerWatch
	if cfg.Follow {
		watch = newBrokerWatch(cfg.Warn, cmp.Or(cfg.StallAfter, 15*time.Second))
		opts = append(opts, kgo.WithHooks(watch))
	}
	cl, err := kafka.NewClient(&cfg.Kafka, "results", nil, nil, opts...)
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	if watch != nil { // stopped before the client closes
		wctx, stop := context.WithCancel(ctx)
		var wg sync.WaitGroup
		wg.Go(func() { watch.run(wctx) })
		defer wg.Wait()
		defer stop()
	}

	out := newPrinter(cfg.Out, cfg.Warn, cfg.JSON, cfg.Follow)
	defer out.flush()
	r := &reader{cfg: &cfg, cl: cl, out: out, watch: watch}
	if cfg.Last == 0 {
		return r.read(ctx, until)
	}
	if err := r.printLast(ctx, until, bounds); err != nil || !cfg.Follow {
		return err
	}
	return r.read(ctx, nil)
}

// bounds are a partition's oldest offset and the offset its next record
// gets.
type bounds struct{ start, end int64 }

// partitionBounds asks the brokers for the topic's partitions and their
// offsets, within the connect timeout: an unreachable broker or a missing
// topic fails here, naming the brokers.
func partitionBounds(ctx context.Context, cfg *Config) (map[int32]bounds, error) {
	brokers := strings.Join(cfg.Kafka.SeedBrokers(), ",")
	cl, err := kafka.NewClient(&cfg.Kafka, "results", nil, nil)
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	cctx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout)
	defer cancel()
	if err := cl.Ping(cctx); err != nil {
		if cctx.Err() != nil && ctx.Err() == nil {
			err = fmt.Errorf("no answer within %s", cfg.ConnectTimeout)
		}
		return nil, fmt.Errorf("%w at %s: %w", ErrNoBroker, brokers, err)
	}
	starts, ends, err := kafka.TopicOffsets(cctx, kadm.NewClient(cl), cfg.Topic)
	if err != nil {
		return nil, fmt.Errorf("topic %s on %s: %w", cfg.Topic, brokers, err)
	}
	b := map[int32]bounds{}
	for p, end := range ends {
		b[p] = bounds{start: starts[p], end: end}
	}
	return b, nil
}

// reader consumes the results topic and prints what cfg selects.
type reader struct {
	cfg   *Config
	cl    *kgo.Client
	out   *printer
	watch *brokerWatch // with Follow; else nil
	n     int          // results printed
}

// printLast reads each partition up to the end it had (until) and prints
// the cfg.Last newest results, oldest first, holding no more than those.
// Records past those ends are left to the read that follows (with
// Follow): the client goes back to every partition's end in bounds.
func (r *reader) printLast(ctx context.Context, until map[int32]int64, bounds map[int32]bounds) error {
	ends := make(map[int32]kgo.EpochOffset, len(bounds))
	for p, b := range bounds {
		ends[p] = kgo.EpochOffset{Epoch: -1, Offset: b.end}
	}
	polled := len(until) > 0
	tail := newNewest(r.cfg.Last)
	err := r.poll(ctx, until, func(rec *kgo.Record, res wire.Result, beyond bool) bool {
		if !beyond {
			tail.add(rec.Timestamp, res)
		}
		return true
	})
	if err != nil {
		return r.unfinished(ctx, err)
	}
	for _, res := range tail.oldestFirst() {
		r.out.print(res)
	}
	r.out.flush()
	if polled { // else the client is where the tail ended
		r.cl.SetOffsets(map[string]map[int32]kgo.EpochOffset{r.cfg.Topic: ends})
	}
	return nil
}

// read prints results until the offsets of until were read (nil: no end),
// cfg.Count were printed or ctx ends.
func (r *reader) read(ctx context.Context, until map[int32]int64) error {
	err := r.poll(ctx, until, func(_ *kgo.Record, res wire.Result, beyond bool) bool {
		if beyond {
			return true
		}
		r.out.print(res)
		r.n++
		return r.cfg.Count == 0 || r.n < r.cfg.Count
	})
	if err != nil {
		return r.unfinished(ctx, err)
	}
	if r.cfg.Count > 0 && r.n < r.cfg.Count && !r.cfg.Follow {
		if ctx.Err() == context.Canceled {
			return fmt.Errorf("interrupted after %d of %d results", r.n, r.cfg.Count)
		}
		if r.cfg.ID != "" {
			return fmt.Errorf("%d of %d results of message %q within %s", r.n, r.cfg.Count, r.cfg.ID, r.cfg.Timeout)
		}
		return fmt.Errorf("%d of %d results within %s", r.n, r.cfg.Count, r.cfg.Timeout)
	}
	return nil
}

// errNotAtEnd is poll's answer when ctx ended before the ends it was to
// read to.
var errNotAtEnd = errors.New("not at the end")

// unfinished turns poll's errNotAtEnd into what the user is told: with
// Follow, the end of ctx is how a read ends; without it, a read that did
// not reach the topic's end says why rather than pass for a whole one.
func (r *reader) unfinished(ctx context.Context, err error) error {
	switch {
	case !errors.Is(err, errNotAtEnd):
		return err
	case r.cfg.Follow:
		return nil
	case ctx.Err() == context.Canceled:
		return fmt.Errorf("interrupted before the end of %s", r.cfg.Topic)
	}
	return fmt.Errorf("the end of %s not reached within %s (--timeout)", r.cfg.Topic, r.cfg.Timeout)
}

// poll hands each result of the selected message id to use, until use
// says stop, the offsets of until were read (nil: no end; a batch is
// handed over whole) or ctx ends (errNotAtEnd while until has offsets
// left to read, else not an error). A result past its
// partition's end in until is beyond. Records that are not results are
// reported to cfg.Warn.
func (r *reader) poll(ctx context.Context, until map[int32]int64, use func(rec *kgo.Record, res wire.Result, beyond bool) bool) error {
	ends := maps.Clone(until)
	for until == nil || len(until) > 0 {
		if r.watch != nil {
			r.watch.polling(true)
		}
		fs := r.cl.PollFetches(ctx)
		if r.watch != nil {
			r.watch.polling(false)
		}
		if ctx.Err() != nil {
			if len(until) > 0 {
				return errNotAtEnd
			}
			return nil
		}
		if err := fs.Err0(); err != nil {
			return err
		}
		for _, rec := range fs.Records() {
			beyond := false
			if ends != nil {
				end, ok := ends[rec.Partition]
				beyond = !ok || rec.Offset >= end
				if rec.Offset+1 >= end {
					delete(until, rec.Partition)
				}
			}
			res, err := wire.DecodeResult(rec.Value)
			if err != nil {
				fmt.Fprintf(r.cfg.Warn, "skipping partition %d offset %d: %s\n", rec.Partition, rec.Offset, Printable(err.Error()))
				continue
			}
			if r.cfg.ID != "" && res.ID != r.cfg.ID {
				continue
			}
			if !use(rec, res, beyond) {
				return nil
			}
		}
	}
	return nil
}

// printer prints results as a table or as JSON lines, every string of a
// result escaped for a terminal (escape.go). It holds at most tableChunk
// rows, whatever the number of results.
type printer struct {
	w, warn io.Writer
	json    bool
	// widths are the table's column widths so far (a cell's width in
	// runes, without the two spaces between columns): a wider cell widens
	// its column from its chunk on.
	widths []int
	// held are the rows of a table read to its end not yet printed: they
	// are aligned with each other, tableChunk at a time. A followed table
	// holds none: its rows are printed as they come.
	held  [][]string
	chunk int // rows held before they are printed: tableChunk, 1 when followed
}

// tableChunk is how many rows of a table are aligned together. A table of
// up to tableChunk results is aligned on its widest cells; a longer one
// prints a chunk at a time, each column as wide as its widest cell so far.
const tableChunk = 1024

// columns are the table's headers; followWidths their widths when the
// table is followed: a funnel's 32-digit ids, and room for device ids,
// tiers and labels of common length, and a model's 12-digit sha with a
// short version label. MODEL is the exit tier's model version in its
// compact form (wire.ModelVersion: sha or sha@version), "-" when the
// result names none.
var (
	columns      = []string{"ID", "DEVICE", "TIER", "LABEL", "CONFIDENCE", "MODEL", "LATENCY"}
	followWidths = []int{32, 16, 6, 12, 10, 15, 12}
)

// newPrinter starts the table (unless asJSON); when following, rows are
// printed one by one, so the header is printed at once.
func newPrinter(w, warn io.Writer, asJSON, follow bool) *printer {
	p := &printer{w: w, warn: warn, json: asJSON, chunk: tableChunk}
	switch {
	case asJSON:
	case follow:
		p.widths, p.chunk = slices.Clone(followWidths), 1
		p.row(slices.Clone(columns)) // at once: it says the topic was found
	default:
		p.widths = make([]int, len(columns)-1)
		p.row(slices.Clone(columns))
	}
	return p
}

func (p *printer) print(r wire.Result) {
	if p.json {
		b, err := wire.AppendResult(nil, &r)
		if err != nil { // a decoded result encodes; say so if not
			fmt.Fprintf(p.warn, "skipping result %q: %v\n", r.ID, err)
			return
		}
		fmt.Fprintf(p.w, "%s\n", escapeJSON(b))
		return
	}
	p.row([]string{Printable(r.ID), Printable(r.Device), Printable(r.Tier), Printable(r.Label),
		fmt.Sprintf("%.3f", r.Confidence), Model(r), Latency(r)})
}

// row holds the cells of one row (the last, the latency, right-aligned to
// 12 characters as Latency makes it), and prints the rows held once there
// are chunk of them.
func (p *printer) row(cells []string) {
	last := len(cells) - 1
	cells[last] = fmt.Sprintf("%12s", cells[last])
	for i, c := range cells[:last] {
		p.widths[i] = max(p.widths[i], utf8.RuneCountInString(c))
	}
	p.held = append(p.held, cells)
	if len(p.held) >= p.chunk {
		p.flush()
	}
}

// flush prints the rows held, padded to the column widths.
func (p *printer) flush() {
	var b strings.Builder
	for _, cells := range p.held {
		last := len(cells) - 1
		for i, c := range cells[:last] {
			b.WriteString(c)
			b.WriteString(strings.Repeat(" ", p.widths[i]-utf8.RuneCountInString(c)+2))
		}
		b.WriteString(cells[last])
		b.WriteByte('\n')
	}
	clear(p.held)
	p.held = p.held[:0]
	if b.Len() > 0 {
		io.WriteString(p.w, b.String())
	}
}

// Model is a result's exit model as the table prints it: the compact
// form of its version (3f9a1c0b2d4e or 3f9a1c0b2d4e@v2), "-" when the
// result names none (written before results did, or by a replica that
// did not say).
func Model(r wire.Result) string {
	if r.Model.IsZero() {
		return "-"
	}
	return Printable(r.Model.String())
}

// Latency is a result's end-to-end latency as the table prints it: from
// the device's sent_at to the exit, always in milliseconds with one
// decimal ("12.3 ms", "423247.8 ms" for 7m3.2478s), right-aligned to 12
// characters like the column's header; "-" when the device gave no
// sent_at.
func Latency(r wire.Result) string {
	if r.SentAt.IsZero() {
		return fmt.Sprintf("%12s", "-")
	}
	return fmt.Sprintf("%9.1f ms", float64(r.ExitedAt.Sub(r.SentAt))/float64(time.Millisecond))
}
