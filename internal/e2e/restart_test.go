package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/options"
	"github.com/plgd-dev/go-coap/v3/udp"
	udpclient "github.com/plgd-dev/go-coap/v3/udp/client"

	"github.com/ddnn-continuum/ddnn/internal/testsupport"
)

// TestUpRestartInPlaceUnderLoad runs `ddnn up` from a binary of its own
// while devices send 300 msg/s (200 over HTTP, 100 over CoAP) and
// restarts it twice: first the plain way (SIGTERM, then a new `ddnn up`),
// whose refused sends are only reported, then in place (SIGUSR2) after a
// new binary was put at its path: the same process runs the new binary,
// no send is refused and every accepted one has a result. A SIGUSR2
// while the binary is not executable is refused and changes nothing.
func TestUpRestartInPlaceUnderLoad(t *testing.T) {
	tp := writePipeline(t, "restart", 1, "")
	bin := filepath.Join(t.TempDir(), "ddnn")
	copyBinary(t, ddnn, bin)
	images := testSet(t).Samples
	results := tp.name + ".results"
	const each = 600 // sends accepted before and after each restart

	// The plain way: stop, start.
	p := upBinary(t, tp, bin)
	plain := startDevices(t, tp, images, "plain-")
	defer plain.stop()
	testsupport.WaitFor(t, 30*time.Second, "the load under way", func() bool { return len(plain.accepted()) >= each })
	stopAt := time.Now()
	p.term(t)
	p = upBinary(t, tp, bin)
	plainTook := time.Since(stopAt)
	n := len(plain.accepted())
	testsupport.WaitFor(t, 30*time.Second, "the load going on after the restart", func() bool { return len(plain.accepted()) >= n+each })
	plain.stop()
	missing, dups := awaitResults(t, tp.broker, results, plain.accepted(), 90*time.Second)
	reportLost(t, "stop and start", plain.accepted(), missing)
	t.Logf("stop and start (%s to ready): %s, %d lost, %d duplicates", plainTook.Round(time.Millisecond), plain, len(missing), dups)

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
	live := startDevices(t, tp, images, "inplace-")
	defer live.stop()
	testsupport.WaitFor(t, 30*time.Second, "the load under way", func() bool { return len(live.accepted()) >= each })
	copyBinary(t, ddnn, bin) // renamed over the running one
	exeLink := "/proc/" + strconv.Itoa(pid) + "/exe"
	if exe, _ := os.Readlink(exeLink); !strings.HasSuffix(exe, " (deleted)") {
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
	if exe, _ := os.Readlink(exeLink); exe != bin {
		t.Errorf("up (pid %d) runs %q after the restart, want the new %s", pid, exe, bin)
	}
	if now := childPIDs(t, pid); len(now) != len(children) || slices.ContainsFunc(now, func(c int) bool { return slices.Contains(children, c) }) {
		t.Errorf("children %v after the restart, were %v: want as many, all new", now, children)
	}
	n = len(live.accepted())
	testsupport.WaitFor(t, 30*time.Second, "the load going on after the restart", func() bool { return len(live.accepted()) >= n+each })
	live.stop()
	if r := live.refused(); r > 0 {
		t.Errorf("%d sends refused across the in-place restart: %s", r, live)
	}
	missing, dups = awaitResults(t, tp.broker, results, live.http.ids(), 90*time.Second)
	reportLost(t, "in-place restart, HTTP", live.http.ids(), missing)
	coapMissing, coapDups := awaitResults(t, tp.broker, results, live.coap.ids(), 90*time.Second)
	reportLost(t, "in-place restart, CoAP", live.coap.ids(), coapMissing)
	t.Logf("in-place restart (%s to ready): %s; lost %d over HTTP, %d over CoAP; duplicates %d over HTTP, %d over CoAP",
		took.Round(time.Millisecond), live, len(missing), len(coapMissing), dups, coapDups)
}

// devices are HTTP devices sending 200 msg/s and CoAP ones 100 msg/s.
type devices struct{ http, coap *load }

func startDevices(t *testing.T, tp testPipeline, images [][]byte, prefix string) devices {
	return devices{
		http: startLoad(t, tp.funnel, images, prefix+"http-", 0, 200),
		coap: startCoAPLoad(t, tp.coap, images, prefix+"coap-", 100),
	}
}

func (d devices) stop() {
	d.http.stop()
	d.coap.stop()
}

func (d devices) accepted() []string { return append(d.http.ids(), d.coap.ids()...) }

func (d devices) refused() int {
	d.http.mu.Lock()
	defer d.http.mu.Unlock()
	d.coap.mu.Lock()
	defer d.coap.mu.Unlock()
	return len(d.http.refused) + len(d.coap.refused)
}

func (d devices) String() string {
	var b strings.Builder
	for _, l := range []struct {
		name string
		l    *load
	}{{"HTTP", d.http}, {"CoAP", d.coap}} {
		l.l.mu.Lock()
		fmt.Fprintf(&b, "%s %d sent, %d refused %v, %d accepted (the slowest in %s); ", l.name, len(l.l.accepted)+len(l.l.refused), len(l.l.refused), l.l.reasons, len(l.l.accepted), l.l.slowest.Round(time.Millisecond))
		l.l.mu.Unlock()
	}
	return strings.TrimSuffix(b.String(), "; ")
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

// startCoAPLoad is startLoad for CoAP devices: each worker a device with
// its own UDP socket and one confirmable request outstanding (RFC 7252's
// NSTART), sending ?id= and ?device=; a send is accepted on 2.01 Created.
func startCoAPLoad(t *testing.T, addr string, images [][]byte, prefix string, rate float64) *load {
	t.Helper()
	conns := make([]*udpclient.Conn, loadWorkers)
	for w := range conns {
		c, err := udp.Dial(addr, options.WithLimitClientParallelRequest(1), options.WithLimitClientEndpointParallelRequest(1))
		if err != nil {
			t.Fatal(err)
		}
		conns[w] = c
	}
	return runLoad(0, rate, func(l *load, i, worker int) {
		id := prefix + strconv.Itoa(i)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		began := time.Now()
		resp, err := conns[worker].Post(ctx, "/v1/ingest", message.AppOctets, bytes.NewReader(images[i%len(images)]),
			message.Option{ID: message.URIQuery, Value: []byte("id=" + id)},
			message.Option{ID: message.URIQuery, Value: []byte("device=coap-" + strconv.Itoa(worker))})
		switch {
		case err != nil && ctx.Err() != nil:
			l.record(id, "coap: no answer in time", 0)
		case err != nil:
			l.record(id, "coap: "+err.Error(), 0)
		case resp.Code() != codes.Created:
			l.record(id, "coap "+resp.Code().String(), 0)
		default:
			l.record(id, "", time.Since(began))
		}
	}, func() {
		for _, c := range conns {
			c.Close()
		}
	})
}

// TestUpRestartInPlaceSites restarts in place a `ddnn up` that runs the
// continuum's three sites, each with its own broker, funnel and admin,
// while devices send 200 msg/s to the edge's funnel: every site's sockets
// are handed over, no send is refused, and every accepted message has a
// result on the results site.
func TestUpRestartInPlaceSites(t *testing.T) {
	c := writeContinuum(t, "restartsites")
	p := start(t, "up", "-f", c.file)
	waitSites(t, c, p)
	const each = 400
	live := startLoad(t, c.funnel["edge"], testSet(t).Samples, "sites-", 0, 200)
	defer live.stop()
	testsupport.WaitFor(t, 30*time.Second, "the load under way", func() bool { return len(live.ids()) >= each })
	mark := len(p.out.String())
	if err := syscall.Kill(p.cmd.Process.Pid, syscall.SIGUSR2); err != nil {
		t.Fatal(err)
	}
	testsupport.WaitFor(t, 60*time.Second, "up executing the binary", func() bool {
		return strings.Contains(p.out.String()[mark:], "restart: pipeline stopped; executing the binary")
	})
	waitSites(t, c, p)
	if out := p.out.String()[mark:]; strings.Contains(out, "no longer in the pipeline file") {
		t.Errorf("the restarted up closed sockets handed over:\n%s", out)
	}
	n := len(live.ids())
	testsupport.WaitFor(t, 30*time.Second, "the load going on after the restart", func() bool { return len(live.ids()) >= n+each })
	live.stop()
	if len(live.refused) > 0 {
		t.Errorf("%d of %d sends refused across the in-place restart: %v", len(live.refused), len(live.refused)+len(live.accepted), live.reasons)
	}
	missing, dups := awaitResults(t, c.kafka["edge"], c.name+".results", live.ids(), 90*time.Second)
	reportLost(t, "in-place restart of three sites", live.ids(), missing)
	t.Logf("in-place restart of three sites: %d sent, %d refused, %d accepted (the slowest in %s), %d lost, %d duplicates",
		len(live.accepted)+len(live.refused), len(live.refused), len(live.accepted), live.slowest.Round(time.Millisecond), len(missing), dups)
}
