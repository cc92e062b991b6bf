// Package dlq is `ddnn dlq`: it reads a tier's dead-letter topic on the
// tier's site's Kafka (with the pipeline's security settings) and lists
// its records grouped by the kind of their reason, shows them with what
// their headers say of the record each parks, or replays them: sends the
// records back to the tier's input, but for those whose message already
// has a result.
package dlq

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ddnn-continuum/ddnn/internal/command"
	"github.com/ddnn-continuum/ddnn/internal/kafka"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/records"
	"github.com/ddnn-continuum/ddnn/internal/results"
)

// Usage is ddnn dlq's help.
const Usage = `Usage:
  ddnn dlq list -f FILE --tier T [--reason SUBSTR] [--since DUR]            dead letters of tier T by kind of reason, with counts
  ddnn dlq show -f FILE --tier T [--reason SUBSTR] [--since DUR] [--limit N] [--json]
                                                                         the dead letters, with their source, reason and size
  ddnn dlq replay -f FILE --tier T [--to-tier T2] [--reason SUBSTR] [--since DUR] [--limit N] [--dry-run]
                                                                         send them back to the tier's input, but those with a result

Run 'ddnn dlq show -h' for every flag.
`

// Synopses of ddnn dlq list and show.
const (
	ListSynopsis   = "dlq list -f FILE --tier T [--reason SUBSTR] [--since DUR]"
	ShowSynopsis   = "dlq show -f FILE --tier T [--reason SUBSTR] [--since DUR] [--limit N] [--json]"
	ReplaySynopsis = "dlq replay -f FILE --tier T [--to-tier T2] [--reason SUBSTR] [--since DUR] [--limit N] [--dry-run]"
)

// Command is ddnn dlq list, show or replay with its flags.
type Command struct {
	File, Tier, Reason string
	Since              time.Duration
	Limit              int
	JSON               bool
	// Show prints the records instead of counting them.
	Show bool
	// Replay sends them back to ToTier's input (default Tier's); DryRun
	// says what it would send.
	Replay bool
	ToTier string
	DryRun bool
}

// Flags binds c to the flags of ddnn dlq list (and show's, with Show).
func (c *Command) Flags(fs *flag.FlagSet) {
	command.FileFlag(fs, &c.File)
	fs.StringVar(&c.Tier, "tier", "", "the tier whose dead letters to read (required)")
	fs.StringVar(&c.Reason, "reason", "", "only dead letters whose reason contains this")
	fs.DurationVar(&c.Since, "since", 0, "only dead letters parked within this long before now (default: all the topic holds)")
	switch {
	case c.Show:
		fs.IntVar(&c.Limit, "limit", 100, "show at most this many, the oldest first")
		fs.BoolVar(&c.JSON, "json", false, "print one JSON object per dead letter")
	case c.Replay:
		fs.IntVar(&c.Limit, "limit", 1000, "replay at most this many dead letters, the oldest first")
		fs.StringVar(&c.ToTier, "to-tier", "", "send them to this tier's input (default: --tier's)")
		fs.BoolVar(&c.DryRun, "dry-run", false, "say what would be replayed and skipped, and send nothing")
	}
}

// Entry is one dead letter as show prints it.
type Entry struct {
	Partition int32     `json:"partition"`
	Offset    int64     `json:"offset"`
	Time      time.Time `json:"time"`
	records.Parked
}

// Run reads the tier's dead-letter topic and prints what c asks for.
func (c *Command) Run(ctx context.Context, stdout, _ io.Writer) error {
	if c.Tier == "" {
		return command.Usagef("--tier is required")
	}
	if (c.Show || c.Replay) && c.Limit < 1 {
		return command.Usagef("--limit must be at least 1")
	}
	p, err := command.LoadPipeline(c.File)
	if err != nil {
		return err
	}
	site, err := p.OnTierSite(c.Tier)
	if err != nil {
		return command.Usagef("--tier: %v", err)
	}
	topic := p.DLQTopic(c.Tier)
	var since time.Time
	if c.Since > 0 {
		since = time.Now().Add(-c.Since)
	}
	var entries []Entry
	var dead []*kgo.Record // with Replay, entries' records
	limited := c.Show || c.Replay
	err = kafka.Scan(ctx, &site.Kafka, topic, func(r *kgo.Record) bool {
		e := Entry{Partition: r.Partition, Offset: r.Offset, Time: r.Timestamp.UTC(), Parked: records.ReadDeadLetter(r)}
		if (since.IsZero() || !e.Time.Before(since)) && strings.Contains(e.Reason, c.Reason) {
			entries = append(entries, e)
			if c.Replay {
				dead = append(dead, r)
			}
		}
		return !limited || len(entries) < c.Limit
	})
	if err != nil {
		return fmt.Errorf("dead letters of tier %q: %w", c.Tier, err)
	}
	switch {
	case c.Show:
		return show(stdout, entries, c.JSON)
	case c.Replay:
		return c.replay(ctx, stdout, p, topic, dead)
	}
	list(stdout, topic, entries, site)
	return nil
}

// list prints the entries' counts by kind of reason, most first, with
// the latest reason of each kind as its example.
func list(w io.Writer, topic string, entries []Entry, site *pipeline.SiteView) {
	if len(entries) == 0 {
		fmt.Fprintf(w, "no dead letters in %s (site %s) that match\n", topic, site.Name)
		return
	}
	type group struct {
		kind    string
		n       int
		last    time.Time
		example string
	}
	byKind := map[string]*group{}
	for _, e := range entries {
		k := Kind(e.Reason)
		g := byKind[k]
		if g == nil {
			g = &group{kind: k}
			byKind[k] = g
		}
		g.n++
		if !e.Time.Before(g.last) {
			g.last, g.example = e.Time, e.Reason
		}
	}
	groups := make([]*group, 0, len(byKind))
	for _, g := range byKind {
		groups = append(groups, g)
	}
	slices.SortFunc(groups, func(a, b *group) int {
		if a.n != b.n {
			return b.n - a.n
		}
		return strings.Compare(a.kind, b.kind)
	})
	fmt.Fprintf(w, "%d dead letters in %s (site %s)\n", len(entries), topic, site.Name)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "COUNT\tKIND\tLATEST\tEXAMPLE")
	for _, g := range groups {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", g.n, results.Printable(g.kind), g.last.Format(time.RFC3339), results.Printable(cut(g.example, 120)))
	}
	tw.Flush()
}

// show prints the entries, one block or one JSON line each.
func show(w io.Writer, entries []Entry, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		for _, e := range entries {
			if err := enc.Encode(e); err != nil {
				return err
			}
		}
		return nil
	}
	for _, e := range entries {
		fmt.Fprintf(w, "partition %d offset %d at %s\n", e.Partition, e.Offset, e.Time.Format(time.RFC3339Nano))
		fmt.Fprintf(w, "  id:      %s\n", results.Printable(e.ID))
		fmt.Fprintf(w, "  source:  %s[%d] offset %d\n", results.Printable(e.SourceTopic), e.SourcePartition, e.SourceOffset)
		fmt.Fprintf(w, "  size:    %d bytes\n", e.Size)
		if e.Truncated != "" {
			fmt.Fprintf(w, "  cut:     %s\n", results.Printable(e.Truncated))
		}
		fmt.Fprintf(w, "  reason:  %s\n", results.Printable(e.Reason))
	}
	return nil
}

// digits are runs of digits in a reason: counts, sizes, offsets.
var digits = regexp.MustCompile(`[0-9]+`)

// Kind is the kind of a dead letter's reason: the text before its first
// ": " (such as "function rejected the record" or "attempts exhausted"),
// or, without one, the reason with its numbers as N.
func Kind(reason string) string {
	if k, _, ok := strings.Cut(reason, ": "); ok {
		return k
	}
	return digits.ReplaceAllString(reason, "N")
}

// cut bounds s to n bytes on a UTF-8 boundary.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}
