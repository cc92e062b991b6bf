package results

import (
	"context"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/ddnn-continuum/ddnn/internal/testsupport"
	"github.com/ddnn-continuum/ddnn/internal/wire"
)

// hostile is a result whose strings carry what a terminal obeys: ESC
// sequences, BEL, CR, a tab, DEL, C1 controls (NEL, CSI), a bidi override
// and a zero-width joiner, and a backslash that must not pass for an
// escape.
func hostile(t0 time.Time) wire.Result {
	return wire.Result{
		ID:     "id-\x1b[2J\x1b]0;pwned\a",
		Device: "cam\r\tdev-2\x7f",
		Tier:   "edge\u0085",
		Label:  "cat\u009b31m\u202egod\u200d\\x1b",
		SentAt: t0, ExitedAt: t0.Add(time.Millisecond), Confidence: 0.5,
	}
}

// unsafeIn returns the first rune of s a terminal would obey (other than
// the newlines that end lines), or -1.
func unsafeIn(s string) rune {
	for _, r := range s {
		if r != '\n' && (unsafeRune(r) || r == utf8.RuneError) {
			return r
		}
	}
	return -1
}

func TestPrintable(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"cam-1", "cam-1"},
		{"a\x1b[31mb", `a\x1b[31mb`},
		{"bell\a cr\r tab\t del\x7f", `bell\x07 cr\x0d tab\x09 del\x7f`},
		{"c1\u0085\u009b", `c1\x85\x9b`},
		{"bidi\u202e\u2066 zw\u200b sep\u2028", `bidi\u202e\u2066 zw\u200b sep\u2028`},
		{"tag\U000e0041", `tag\U000e0041`},
		{`back\slash`, `back\\slash`},
		{"bad\xffutf8", `bad\xffutf8`},
		{"ünïcödé 猫 🐈", "ünïcödé 猫 🐈"},
	} {
		if got := Printable(tc.in); got != tc.want {
			t.Errorf("Printable(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestHostileResult: a result record holding terminal controls is printed
// with every one escaped, in the table read to its end, the followed table
// and JSON; the JSON stays JSON and decodes to the same result.
func TestHostileResult(t *testing.T) {
	for _, tc := range []struct {
		name         string
		follow, json bool
	}{
		{"table", false, false},
		{"followed table", true, false},
		{"json", false, true},
		{"followed json", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t)
			want := hostile(c.t0)
			var out, warn testsupport.Buffer
			cfg := c.config(&out)
			cfg.JSON, cfg.Warn = tc.json, &warn
			if tc.follow {
				cfg.Follow, cfg.FromBeginning, cfg.Count = true, true, 1
			}
			c.produceResult(t, 0, 1, want)
			if err := Read(context.Background(), cfg); err != nil {
				t.Fatal(err)
			}
			got := out.String()
			if r := unsafeIn(got); r >= 0 {
				t.Errorf("printed %U raw:\n%q", r, got)
			}
			if !tc.json {
				for _, s := range []string{`id-\x1b[2J\x1b]0;pwned\x07`, `cam\x0d\x09dev-2\x7f`, `edge\x85`, `cat\x9b31m\u202egod\u200d\\x1b`} {
					if !strings.Contains(got, s) {
						t.Errorf("no %s in:\n%s", s, got)
					}
				}
				return
			}
			line := strings.TrimSuffix(got, "\n")
			if strings.Contains(line, "\n") {
				t.Fatalf("want one line:\n%q", got)
			}
			r, err := wire.DecodeResult([]byte(line))
			if err != nil {
				t.Fatalf("not a result: %v\n%s", err, line)
			}
			if r.ID != want.ID || r.Device != want.Device || r.Tier != want.Tier || r.Label != want.Label {
				t.Errorf("decoded %+v, want %+v", r, want)
			}
		})
	}
}

// TestFollowAligned: a followed table prints its header before any row, and
// each row as it comes, yet its columns line up under the header's: every
// cell starts where its header starts (ids as the funnel makes them, and
// device ids, tiers and labels of ordinary lengths).
func TestFollowAligned(t *testing.T) {
	c := newCluster(t)
	rows := []wire.Result{
		{ID: "0123456789abcdef0123456789abcdef", Device: "cam-1", Tier: "edge", Label: "cat", Confidence: 0.9},
		{ID: "a", Device: "camera-kitchen", Tier: "cloud", Label: "ankle boot", Confidence: 0.25},
		{ID: "my-own-id-7", Device: "d", Tier: "fog", Label: "t-shirt/top", Confidence: 1},
	}
	for i, r := range rows {
		r.SentAt, r.ExitedAt = c.t0, c.t0.Add(time.Duration(i+1)*time.Second)
		c.produceResult(t, 0, i, r)
	}
	var out testsupport.Buffer
	cfg := c.config(&out)
	cfg.JSON, cfg.Follow, cfg.FromBeginning, cfg.Count = false, true, true, len(rows)
	if err := Read(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 1+len(rows) {
		t.Fatalf("want a header and %d rows:\n%s", len(rows), out.String())
	}
	header := lines[0]
	for i, r := range rows {
		line := lines[i+1]
		for j, cell := range []string{r.ID, r.Device, r.Tier, r.Label} {
			col := strings.Index(header, columns[j])
			if !strings.HasPrefix(line[col:], cell+" ") {
				t.Errorf("row %d: %q does not start at column %d, under %s:\n%s\n%s", i, cell, col, columns[j], header, line)
			}
		}
		if len(line) != len(header) {
			t.Errorf("row %d ends at %d, the header at %d (LATENCY is right-aligned):\n%s\n%s", i, len(line), len(header), header, line)
		}
	}
}
