package status

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/ddnn-continuum/ddnn/internal/command"
	"github.com/ddnn-continuum/ddnn/internal/testsupport"
)

// sample is a snapshot of one site with a tier of each state and a link
// up and one down.
func sample() Snapshot {
	since := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	ratio, p50, p99 := 0.65, 0.0021, 0.0183
	return Snapshot{
		Pipeline: "fmnist", Time: since.Add(time.Minute),
		Sites: []Site{{
			Name:   "edge",
			Kafka:  Endpoint{Address: "127.0.0.1:9092", Up: true},
			Funnel: Endpoint{Address: "http://127.0.0.1:8081", Error: "connection refused"},
			Admin:  Endpoint{Address: "127.0.0.1:9464", Up: true},
			Tiers: []Tier{
				{Name: "edge", State: StateOK, Runtime: "process", Model: Model{File: "/m/edge.onnx", SHA256: "76fe6d81ff0f"}, ReadyReplicas: 1, DesiredReplicas: 1,
					InRate: 200, OutRate: 199.5, ExitRatio: &ratio, P50Seconds: &p50, P99Seconds: &p99},
				{Name: "fog", State: StateDown, Down: true, DownSince: &since, Lag: 1234},
				{Name: "mid", State: StateLagging, Lag: 5000},
				{Name: "cloud", State: StateDeadLettering, DeadLetters: 12, DeadLettersLastMinute: 3},
			},
			Uplinks: []Uplink{{To: "fog", Backlog: 812, DownSince: &since}, {To: "cloud", Up: true, Rate: 3.5}},
		}},
		Problems: []string{"tier fog: down since 2026-12-07T12:00:00Z", "site edge: funnel http://127.0.0.1:8081 did not answer: \x1b[2Jconnection refused"},
	}
}

// TestPrint: one aligned table per site; a tier down, lagging or
// dead-lettering and a link down are marked "!" with or without colour,
// and coloured only when asked; text from outside cannot drive the
// terminal.
func TestPrint(t *testing.T) {
	var plain, coloured bytes.Buffer
	Print(&plain, sample(), false)
	Print(&coloured, sample(), true)
	out := plain.String()
	t.Logf("\n%s", out)
	if strings.Contains(out, "\x1b") {
		t.Errorf("plain output has an escape sequence:\n%q", out)
	}
	lines := strings.Split(out, "\n")
	marked := map[string]bool{}
	var header string
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) > 1 && f[0] == "!" {
			marked[f[1]] = true
		}
		if len(f) > 0 && f[0] == "TIER" {
			header = l
		}
	}
	for name, want := range map[string]bool{"edge": false, "fog": true, "mid": true, "cloud": true, "edge->fog": true, "edge->cloud": false} {
		if marked[name] != want {
			t.Errorf("row %s marked %v, want %v", name, marked[name], want)
		}
	}
	// Aligned: each column starts where its header does.
	col := strings.Index(header, "LAG")
	for _, l := range lines {
		if strings.Contains(l, "76fe6d81ff0f") && !strings.HasPrefix(l[col:], "0 ") {
			t.Errorf("LAG column at %d of the header, row %q", col, l)
		}
	}
	for _, want := range []string{"edge.onnx 76fe6d81ff0f", "65%", "2.1ms", "18.3ms", "2026-12-07T12:00:00Z", "DOWN!", `\x1b[2Jconnection refused`} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	c := coloured.String()
	if !strings.Contains(c, red+"! fog") || !strings.Contains(c, yellow+"! mid") || !strings.Contains(c, yellow+"! cloud") || strings.Contains(c, red+"  edge") {
		t.Errorf("coloured output does not colour what stands out (only):\n%q", c)
	}
	// Colour wraps whole lines: without it the text is the same.
	if stripped := strings.NewReplacer(red, "", yellow, "", reset, "").Replace(c); stripped != out {
		t.Errorf("coloured output differs from the plain one beyond its colours")
	}
}

// TestJSONStable: the JSON names scripts and the status page rely on.
func TestJSONStable(t *testing.T) {
	b, err := json.Marshal(sample())
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{`"pipeline"`, `"time"`, `"sites"`, `"problems"`, `"kafka"`, `"funnel"`, `"admin"`, `"up"`, `"address"`,
		`"tiers"`, `"uplinks"`, `"runtime"`, `"model"`, `"sha256"`, `"ready_replicas"`, `"desired_replicas"`, `"min_replicas"`, `"max_replicas"`,
		`"lag"`, `"in_rate"`, `"out_rate"`, `"exit_ratio"`, `"p50_seconds"`, `"p99_seconds"`, `"dead_letters"`, `"dead_letters_last_minute"`,
		`"down"`, `"down_since"`, `"state"`, `"backlog"`, `"rate"`} {
		if !bytes.Contains(b, []byte(name)) {
			t.Errorf("JSON lacks %s: %s", name, b)
		}
	}
}

// TestAdminFlag: --admin SITE=ADDR,ADDR per site, SITE= optional on a
// pipeline of one site; a site the pipeline lacks, or a missing SITE= on
// several sites, is a usage error naming it.
func TestAdminFlag(t *testing.T) {
	p, _, _ := twoSites(t)
	got, err := parseAdmin(p, []string{"edge=127.0.0.1:1,127.0.0.1:2", "cloud=127.0.0.1:3", "edge=127.0.0.1:4"})
	if err != nil || strings.Join(got["edge"], " ") != "127.0.0.1:1 127.0.0.1:2 127.0.0.1:4" || strings.Join(got["cloud"], " ") != "127.0.0.1:3" {
		t.Errorf("parseAdmin = %v (%v)", got, err)
	}
	for _, tc := range []struct{ value, want string }{
		{"moon=127.0.0.1:1", `no site "moon"`},
		{"127.0.0.1:1", "name the site (SITE=ADDR,...): the pipeline has 2 sites"},
		{"edge=", "no address"},
	} {
		if _, err := parseAdmin(p, []string{tc.value}); !errors.Is(err, command.ErrUsage) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("--admin %q: %v, want a usage error with %q", tc.value, err, tc.want)
		}
	}
}

// TestCommandNotRunning: ddnn status of a pipeline that is not running
// prints no table and fails naming each thing that did not answer; with
// --json it prints the snapshot too.
func TestCommandNotRunning(t *testing.T) {
	_, _, file := twoSites(t)
	for _, asJSON := range []bool{false, true} {
		var out bytes.Buffer
		err := (&Command{File: file, JSON: asJSON, Timeout: 2 * time.Second}).Run(context.Background(), &out, &out)
		if err == nil || !strings.HasPrefix(err.Error(), "pipeline st is not running: nothing answered\n") || strings.Count(err.Error(), "\n") != 6 {
			t.Errorf("json %v: err = %v, want one line per site's kafka, funnel and admin", asJSON, err)
		}
		var snap Snapshot
		if asJSON && (json.Unmarshal(out.Bytes(), &snap) != nil || len(snap.Sites) != 2) {
			t.Errorf("--json printed %q, want the snapshot", out.String())
		}
		if !asJSON && out.Len() != 0 {
			t.Errorf("printed %q for a pipeline that is not running", out.String())
		}
	}
	var out bytes.Buffer
	if err := (&Command{File: file, Site: "moon", Timeout: time.Second}).Run(context.Background(), &out, &out); !errors.Is(err, command.ErrUsage) {
		t.Errorf("--site moon: %v, want a usage error", err)
	}
}

// openTerminal opens a new pseudo-terminal's follower side, a terminal as
// stdout is one, closed when the test ends.
func openTerminal(t *testing.T) *os.File {
	t.Helper()
	leader, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	t.Cleanup(func() { leader.Close() })
	var unlock int32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, leader.Fd(), syscall.TIOCSPTLCK, uintptr(unsafe.Pointer(&unlock))); e != 0 {
		t.Fatal(e)
	}
	var n uint32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, leader.Fd(), syscall.TIOCGPTN, uintptr(unsafe.Pointer(&n))); e != 0 {
		t.Fatal(e)
	}
	f, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// TestColour: colour only on a terminal, and not with NO_COLOR set; a
// file, /dev/null (a character device, not a terminal) and a buffer get
// none.
func TestColour(t *testing.T) {
	unset := func(string) string { return "" }
	noColour := func(k string) string { return map[string]string{"NO_COLOR": "1"}[k] }
	tty := openTerminal(t)
	if !useColour(tty, unset) {
		t.Error("no colour on a terminal")
	}
	if useColour(tty, noColour) {
		t.Error("colour on a terminal with NO_COLOR set")
	}
	file, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	for name, w := range map[string]io.Writer{"a file": file, os.DevNull: null, "a buffer": &bytes.Buffer{}} {
		if useColour(w, unset) {
			t.Errorf("colour on %s", name)
		}
	}
}

// TestWatch: --watch --json prints a snapshot per --interval, one JSON
// object a line, even of a pipeline that does not answer, until ctx ends,
// and then returns without an error.
func TestWatch(t *testing.T) {
	_, _, file := twoSites(t)
	var out testsupport.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- (&Command{File: file, Watch: true, JSON: true, Interval: 50 * time.Millisecond, Timeout: time.Second}).Run(ctx, &out, &out)
	}()
	testsupport.WaitFor(t, 20*time.Second, "three snapshots printed", func() bool { return strings.Count(out.String(), "\n") >= 3 })
	cancel()
	if err := <-done; err != nil {
		t.Errorf("--watch ended with %v, want nil on interrupt", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var snap Snapshot
		if err := json.Unmarshal([]byte(line), &snap); err != nil || snap.Pipeline != "st" || len(snap.Problems) == 0 {
			t.Errorf("line %q: %v; want a snapshot naming what did not answer", line, err)
		}
	}
}
