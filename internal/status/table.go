package status

import (
	"bytes"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ddnn-continuum/ddnn/internal/results"
)

// ANSI colours of what stands out; the marker "!" at the start of its
// line says the same without colour.
const (
	red    = "\x1b[31m"
	yellow = "\x1b[33m"
	reset  = "\x1b[0m"
)

// row is one line of a table: its cells and the colour it stands out in
// ("" when it does not).
type row struct {
	cells  []string
	colour string
}

// Print writes s as a table per site, then the problems; with colour,
// what stands out is coloured too.
func Print(w io.Writer, s Snapshot, colour bool) {
	fmt.Fprintf(w, "pipeline %s at %s\n", printable(s.Pipeline), s.Time.Format(time.RFC3339))
	for _, site := range s.Sites {
		fmt.Fprintf(w, "\nsite %s   kafka %s   funnel %s   admin %s\n", printable(site.Name),
			endpointText(site.Kafka, colour), endpointText(site.Funnel, colour), endpointText(site.Admin, colour))
		rows := []row{{cells: []string{"TIER", "STATE", "READY/DESIRED", "RUNTIME", "MODEL", "LAG", "IN/S", "OUT/S", "EXITS", "P50", "P99", "DEAD LETTERS", "LAST MIN", "DOWN SINCE"}}}
		for _, t := range site.Tiers {
			rows = append(rows, row{colour: stateColour(t.State), cells: []string{
				t.Name, t.State, fmt.Sprintf("%d/%d", t.ReadyReplicas, t.DesiredReplicas), t.Runtime, servingText(t),
				strconv.FormatInt(t.Lag, 10), rateText(t.InRate), rateText(t.OutRate), ratioText(t.ExitRatio),
				secondsText(t.P50Seconds), secondsText(t.P99Seconds),
				strconv.FormatInt(t.DeadLetters, 10), strconv.FormatInt(t.DeadLettersLastMinute, 10), timeText(t.DownSince),
			}})
		}
		table(w, rows, colour)
		printCanaries(w, site.Tiers, colour)
		if len(site.Uplinks) > 0 {
			rows = []row{{cells: []string{"LINK", "STATE", "BACKLOG", "RATE/S", "DEAD LETTERS", "DOWN SINCE"}}}
			for _, u := range site.Uplinks {
				state, c := "up", ""
				if !u.Up {
					state, c = "down", red
				}
				rows = append(rows, row{colour: c, cells: []string{
					site.Name + "->" + u.To, state, strconv.FormatInt(u.Backlog, 10), rateText(u.Rate),
					strconv.FormatInt(u.DeadLetters, 10), timeText(u.DownSince),
				}})
			}
			fmt.Fprintln(w)
			table(w, rows, colour)
		}
	}
	if len(s.Problems) > 0 {
		fmt.Fprintln(w, "\nproblems:")
		for _, p := range s.Problems {
			line := "! " + printable(p)
			if colour {
				line = red + line + reset
			}
			fmt.Fprintln(w, line)
		}
	}
}

// table writes rows aligned, each indented by its marker: "!" for a row
// that stands out, coloured as it says when colour is on. The colour
// wraps the whole line after alignment, so it takes no width.
func table(w io.Writer, rows []row, colour bool) {
	var buf bytes.Buffer
	tw := tabwriter.NewWriter(&buf, 0, 0, 2, ' ', 0)
	for _, r := range rows {
		marker := " "
		if r.colour != "" {
			marker = "!"
		}
		cells := make([]string, len(r.cells))
		for i, c := range r.cells {
			cells[i] = printable(c)
		}
		fmt.Fprintf(tw, "%s %s\n", marker, strings.Join(cells, "\t"))
	}
	tw.Flush()
	lines := strings.SplitAfter(buf.String(), "\n")
	for i, line := range lines {
		if i < len(rows) && colour && rows[i].colour != "" {
			line = rows[i].colour + strings.TrimSuffix(line, "\n") + reset + "\n"
		}
		io.WriteString(w, line)
	}
}

// stateColour is the colour a tier in state stands out in: red when it
// is down or unknown, yellow when it lags or dead-letters.
func stateColour(state string) string {
	switch state {
	case StateDown, StateUnknown:
		return red
	case StateLagging, StateDeadLettering:
		return yellow
	}
	return ""
}

func endpointText(e Endpoint, colour bool) string {
	if e.Up {
		return printable(e.Address) + " up"
	}
	s := printable(e.Address) + " DOWN!"
	if colour {
		s = red + s + reset
	}
	return s
}

func modelText(m Model) string {
	if m.File == "" {
		return "-"
	}
	name := filepath.Base(m.File)
	if m.SHA256 == "" {
		return name + " (unread)"
	}
	return name + " " + m.SHA256
}

// servingText is the tier's model as the file names it and, when its
// replicas serve other models or more than one (a rollout with the old
// replicas beside the new, a canary), what they serve.
func servingText(t Tier) string {
	text := modelText(t.Model)
	if len(t.Serving) == 0 || len(t.Serving) == 1 && t.Model.SHA256 != "" && strings.HasPrefix(t.Serving[0], t.Model.SHA256) {
		return text
	}
	return text + " (serving " + strings.Join(t.Serving, ", ") + ")"
}

func rateText(r float64) string { return strconv.FormatFloat(r, 'f', 1, 64) }

func ratioText(r *float64) string {
	if r == nil {
		return "-"
	}
	return strconv.FormatFloat(*r*100, 'f', 0, 64) + "%"
}

// secondsText is a service time in the unit that reads best.
func secondsText(s *float64) string {
	if s == nil {
		return "-"
	}
	d := time.Duration(*s * float64(time.Second))
	switch {
	case d < time.Millisecond:
		return d.Round(time.Microsecond).String()
	case d < time.Second:
		return d.Round(100 * time.Microsecond).String()
	}
	return d.Round(10 * time.Millisecond).String()
}

func timeText(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.Format(time.RFC3339)
}

// printable keeps strings from outside (an error a server answered, a
// name in the YAML) from driving the terminal.
func printable(s string) string { return results.Printable(s) }
