package e2e

import (
	"io"
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

// TestUpRestartInPlaceUnderLoad runs `ddnn up` from a binary of its own
// while devices send 300 msg/s over HTTP and restarts it twice: first the
// plain way (SIGTERM, then a new `ddnn up`), whose refused sends are only
// reported, then in place (SIGUSR2) after a new binary was put at its
// path: the same process runs the new binary, no send is refused and
// every accepted one has a result. A SIGUSR2 while the binary is not
// executable is refused and changes nothing.
func TestUpRestartInPlaceUnderLoad(t *testing.T) {
	tp := writePipeline(t, "restart", 1, "")
	bin := filepath.Join(t.TempDir(), "ddnn")
	copyBinary(t, ddnn, bin)
	images := testSet(t).Samples
	results := tp.name + ".results"
	const rate, each = 300, 600 // sends before and after each restart

	// The plain way: stop, start.
	p := upBinary(t, tp, bin)
	plain := startLoad(t, tp.funnel, images, "plain-", 0, rate)
	defer plain.stop()
	testsupport.WaitFor(t, 30*time.Second, "the load under way", func() bool { return len(plain.ids()) >= each })
	stopAt := time.Now()
	p.term(t)
	p = upBinary(t, tp, bin)
	plainTook := time.Since(stopAt)
	n := len(plain.ids())
	testsupport.WaitFor(t, 30*time.Second, "the load going on after the restart", func() bool { return len(plain.ids()) >= n+each })
	plain.stop()
	missing, dups := awaitResults(t, tp.broker, results, plain.ids(), 90*time.Second)
	reportLost(t, "stop and start", plain.ids(), missing)
	t.Logf("stop and start (%s): %d sends, %d refused %v, %d accepted, %d lost, %d duplicates",
		plainTook.Round(time.Millisecond), len(plain.accepted)+len(plain.refused), len(plain.refused), plain.reasons, len(plain.accepted), len(missing), dups)

	pid := p.cmd.Process.Pid
	children := childPIDs(t, pid)
	// A binary that cannot run: refused, the pipeline runs on.
	if err := os.Chmod(bin, 0o644); err != nil {
		t.Fatal(err)
	}
	mark := len(p.out.String())
	if err := syscall.Kill(pid, syscall.SIGUSR2); err != nil {
		t.Fatal(err)
	}
	testsupport.WaitFor(t, 10*time.Second, "up refusing the restart", func() bool {
		return strings.Contains(p.out.String()[mark:], "restart: refused; the pipeline runs on")
	})
	if out := p.out.String()[mark:]; !strings.Contains(out, "permission denied") {
		t.Errorf("the refusal does not say the binary cannot run:\n%s", out)
	}
	if now := childPIDs(t, pid); !slices.Equal(sorted(now), sorted(children)) {
		t.Errorf("children %v after a refused restart, were %v", now, children)
	}
	if err := os.Chmod(bin, 0o755); err != nil {
		t.Fatal(err)
	}

	// In place, onto a new binary file at the same path.
	live := startLoad(t, tp.funnel, images, "inplace-", 0, rate)
	defer live.stop()
	testsupport.WaitFor(t, 30*time.Second, "the load under way", func() bool { return len(live.ids()) >= each })
	copyBinary(t, ddnn, bin) // renamed over the running one
	if exe, _ := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe"); !strings.HasSuffix(exe, " (deleted)") {
		t.Fatalf("up runs %q, want the binary replaced", exe)
	}
	mark = len(p.out.String())
	restartAt := time.Now()
	if err := syscall.Kill(pid, syscall.SIGUSR2); err != nil {
		t.Fatal(err)
	}
	testsupport.WaitFor(t, 30*time.Second, "up executing the new binary", func() bool {
		return strings.Contains(p.out.String()[mark:], "restart: pipeline stopped; executing the binary")
	})
	testsupport.WaitFor(t, 60*time.Second, "the restarted up ready", func() bool {
		select {
		case <-p.exited:
			t.Fatalf("up exited at the restart: %v", p.err)
		default:
		}
		return ready("http://" + tp.admin + "/readyz")
	})
	took := time.Since(restartAt)
	if exe, _ := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe"); exe != bin {
		t.Errorf("up (pid %d) runs %q after the restart, want the new %s", pid, exe, bin)
	}
	if now := childPIDs(t, pid); len(now) != len(children) || slices.ContainsFunc(now, func(c int) bool { return slices.Contains(children, c) }) {
		t.Errorf("children %v after the restart, were %v: want as many, all new", now, children)
	}
	n = len(live.ids())
	testsupport.WaitFor(t, 30*time.Second, "the load going on after the restart", func() bool { return len(live.ids()) >= n+each })
	live.stop()
	if len(live.refused) > 0 {
		t.Errorf("%d of %d sends refused across the in-place restart: %v", len(live.refused), len(live.refused)+len(live.accepted), live.reasons)
	}
	missing, dups = awaitResults(t, tp.broker, results, live.ids(), 90*time.Second)
	reportLost(t, "in-place restart", live.ids(), missing)
	t.Logf("in-place restart (%s to ready): %d sends, %d refused %v, %d accepted, %d lost, %d duplicates",
		took.Round(time.Millisecond), len(live.accepted)+len(live.refused), len(live.refused), live.reasons, len(live.accepted), len(missing), dups)
}

// copyBinary writes the binary src to dst through a file beside it
// renamed over dst, as an upgrade does: a process running dst keeps its
// old file.
func copyBinary(t *testing.T, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	tmp := dst + ".new"
	out, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		t.Fatal(err)
	}
}
