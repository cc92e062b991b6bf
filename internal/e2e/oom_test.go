package e2e

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ddnn-continuum/ddnn/internal/testsupport"
)

// TestUpChildrenOOMScore: under memory pressure the kernel must kill one
// of ddnn up's children, which it restarts, and not ddnn up, which holds
// the broker and which nothing restarts: every child (funnel, connectors,
// replicas), and a child restarted after a SIGKILL, has an oom_score_adj
// above the supervisor's, and the supervisor keeps its own.
func TestUpChildrenOOMScore(t *testing.T) {
	tp := writePipeline(t, "oomscore", 2, "")
	p := up(t, tp)
	pid := p.cmd.Process.Pid
	own := oomScoreAdj(t, pid)
	if own >= 1000 {
		t.Skipf("ddnn up's oom_score_adj is %d: no child can score higher", own)
	}
	children := childrenOf(t, pid)
	// The funnel, a connector per tier and the edge's two replicas, at least.
	if len(children) < 5 {
		t.Fatalf("ddnn up has %d children: %v", len(children), children)
	}
	for _, c := range children {
		t.Logf("child %d: oom_score_adj %d: %s", c, oomScoreAdj(t, c), cmdline(c))
		if got := oomScoreAdj(t, c); got <= own {
			t.Errorf("child %d (%s): oom_score_adj %d, not above ddnn up's %d", c, cmdline(c), got, own)
		}
	}

	victim := children[0]
	if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// The supervisor raises it right after the start: wait for the new
	// process, then for its score.
	var restarted int
	testsupport.WaitFor(t, 30*time.Second, "the killed child restarted", func() bool {
		for _, c := range childrenOf(t, pid) {
			if !slices.Contains(children, c) {
				restarted = c
				return true
			}
		}
		return false
	})
	testsupport.WaitFor(t, 10*time.Second, "the restarted child's oom_score_adj above ddnn up's", func() bool {
		return oomScoreAdj(t, restarted) > own
	})
	if got := oomScoreAdj(t, pid); got != own {
		t.Errorf("ddnn up's oom_score_adj is %d, was %d", got, own)
	}
	p.term(t)
}

// childrenOf are the pids of pid's child processes.
func childrenOf(t *testing.T, pid int) []int {
	t.Helper()
	stats, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		t.Fatal(err)
	}
	parent := strconv.Itoa(pid)
	var out []int
	for _, path := range stats {
		b, err := os.ReadFile(path)
		if err != nil {
			continue // gone meanwhile
		}
		s := string(b) // pid (comm) state ppid ...
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(fields) > 1 && fields[1] == parent {
			if c, err := strconv.Atoi(filepath.Base(filepath.Dir(path))); err == nil {
				out = append(out, c)
			}
		}
	}
	slices.Sort(out)
	return out
}

func oomScoreAdj(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/oom_score_adj")
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func cmdline(pid int) string {
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	return strings.Join(strings.Fields(strings.ReplaceAll(string(b), "\x00", " ")), " ")
}
