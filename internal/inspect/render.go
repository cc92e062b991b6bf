package inspect

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// Write prints rep for a person: a headline with the state, the ingest,
// the hops as a table, the result or where the message is, then what was
// searched.
func Write(w io.Writer, rep *Report) error {
	line := func(label, format string, args ...any) {
		fmt.Fprintf(w, "%-11s %s\n", label, fmt.Sprintf(format, args...))
	}
	fmt.Fprintf(w, "message %s: %s\n", rep.ID, headline(rep))
	if in := rep.Ingest; in != nil {
		parts := []string{"site " + in.Site}
		if in.Device != "" {
			parts = append(parts, "device "+in.Device)
		}
		if in.SentAt != nil {
			parts = append(parts, "sent "+stamp(*in.SentAt))
		}
		if in.WrittenAt != nil {
			parts = append(parts, fmt.Sprintf("written %s to %s", stamp(*in.WrittenAt), where(*in.Where)))
		}
		line("ingest", "%s", strings.Join(parts, ", "))
	}
	if len(rep.Hops) > 0 {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "hops\ttier\tsite\treplica\tmodel\tversion\tconfidence\tdecision\tkafka wait\tservice")
		for i, h := range rep.Hops {
			fmt.Fprintf(tw, "  %d\t%s\t%s\t%s\t%s\t%s\t%.4g\t%s\t%s\t%s\n",
				i+1, h.Tier, h.Site, h.Replica, dash(h.Model), dash(h.Version), h.Confidence, h.Decision, seconds(h.KafkaWaitSeconds), seconds(h.ServiceSeconds))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	switch {
	case rep.Result != nil:
		r := rep.Result
		model := ""
		if !r.Model.IsZero() {
			model = ", model " + r.Model.String()
		}
		line("result", "class %d %q, confidence %.4g%s, exited %s, in %s", r.Class, r.Label, r.Confidence, model, stamp(r.ExitedAt), where(r.Where))
	case rep.Waiting != nil:
		wt := rep.Waiting
		route := ""
		if wt.Route != "" {
			route = " (route " + wt.Route + ")"
		}
		line("waiting", "in %s%s since %s; group %s committed %d, %d records ahead of it", where(wt.Position), route, stamp(wt.WrittenAt), wt.Group, wt.Committed, wt.Ahead)
	case rep.DeadLetter != nil:
		d := rep.DeadLetter
		line("dead letter", "in %s, parked %s, read from %s", where(d.Position), stamp(d.ParkedAt), where(d.Source))
		line("reason", "%s", d.Reason)
	}
	if rep.Note != "" {
		line("note", "%s", rep.Note)
	}
	sr := rep.Searched
	var topics []string
	for _, t := range sr.Topics {
		topics = append(topics, fmt.Sprintf("%s on %s (%d)", t.Topic, t.Site, t.Records))
	}
	line("searched", "%d records written since %s (at most %d): %s", sr.Records, stamp(sr.Since), sr.MaxRecords, strings.Join(topics, ", "))
	for _, f := range sr.Failures {
		line("failed", "%s", f)
	}
	return nil
}

func headline(rep *Report) string {
	switch rep.State {
	case StateResult:
		return fmt.Sprintf("result at tier %s", rep.Result.Tier)
	case StateWaiting:
		return fmt.Sprintf("waiting on %s (site %s)", rep.Waiting.Topic, rep.Waiting.Site)
	case StateDeadLettered:
		return fmt.Sprintf("dead-lettered on %s (site %s)", rep.DeadLetter.Topic, rep.DeadLetter.Site)
	}
	return "unknown"
}

func where(p Position) string {
	return fmt.Sprintf("%s[%d]@%d (site %s)", p.Topic, p.Partition, p.Offset, p.Site)
}

func stamp(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

func seconds(s float64) string {
	return time.Duration(s * float64(time.Second)).Round(10 * time.Microsecond).String()
}

// dash is s, or "-" when s is empty.
func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
