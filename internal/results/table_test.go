package results

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/ddnn-continuum/ddnn/internal/wire"
)

// TestTableChunks: a table read to its end is printed a chunk of rows at a
// time, not held whole. A table of one chunk is aligned on its widest
// cells, as a tabwriter aligns it; in a longer one every row's cells start
// under their headers or further right, never further left than a row
// before them, and each chunk is printed once it is full.
func TestTableChunks(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	result := func(i int) wire.Result {
		return wire.Result{ID: strings.Repeat("é", 1+i%40), Device: fmt.Sprintf("cam-%d", i), Tier: "edge",
			Label: strings.Repeat("l", 1+i*7%23), Confidence: 0.5, SentAt: t0, ExitedAt: t0.Add(time.Duration(i) * time.Millisecond)}
	}

	var got, want bytes.Buffer
	p := newPrinter(&got, io.Discard, false, false)
	tw := tabwriter.NewWriter(&want, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "%s\t%12s\n", strings.Join(columns[:len(columns)-1], "\t"), columns[len(columns)-1])
	for i := range 50 {
		r := result(i)
		p.print(r)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.3f\t%s\t%s\n", r.ID, r.Device, r.Tier, r.Label, r.Confidence, Model(r), Latency(r))
	}
	p.flush()
	tw.Flush()
	if got.String() != want.String() {
		t.Errorf("one chunk:\n%s\nwant, as a tabwriter aligns it:\n%s", got.String(), want.String())
	}

	got.Reset()
	p = newPrinter(&got, io.Discard, false, false)
	const n = 3*tableChunk + 10
	for i := range n {
		p.print(result(i))
		if i == tableChunk-1 && strings.Count(got.String(), "\n") < tableChunk {
			t.Fatalf("after %d rows %d lines were printed: the rows are held", tableChunk, strings.Count(got.String(), "\n"))
		}
	}
	p.flush()
	lines := strings.Split(strings.TrimSuffix(got.String(), "\n"), "\n")
	if len(lines) != n+1 {
		t.Fatalf("%d lines, want a header and %d rows", len(lines), n)
	}
	prev := make([]int, len(columns))
	for i, line := range lines {
		starts := cellStarts([]rune(line))
		if len(starts) != len(columns) {
			t.Fatalf("line %d has %d cells: %q", i, len(starts), line)
		}
		for j := 1; j < len(columns)-1; j++ {
			if starts[j] < prev[j] {
				t.Fatalf("line %d: column %s starts at %d, left of %d in a line before:\n%s", i, columns[j], starts[j], prev[j], line)
			}
			prev[j] = starts[j]
		}
	}
}

// cellStarts are the rune offsets where a table line's cells start (cells
// are separated by two spaces or more, the right-aligned latency by at
// least one).
func cellStarts(line []rune) []int {
	starts := []int{0}
	for i := 1; i < len(line); i++ {
		if line[i] != ' ' && line[i-1] == ' ' && i >= 2 && line[i-2] == ' ' {
			starts = append(starts, i)
		}
	}
	return starts
}
