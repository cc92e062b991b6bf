package e2e

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/ddnn-continuum/ddnn/internal/testsupport"
)

var pageScreenshot = flag.String("screenshot", "", "write a PNG of the status page as TestStatusPageOfUp last sees it to this file (docs/images/status-page.png: go test -run TestStatusPageOfUp ./internal/e2e/ -args -screenshot=$PWD/docs/images/status-page.png)")

// TestStatusPageOfUp opens the status page of a running `ddnn up` (the
// three-site continuum) in headless Chromium while images flow: the page
// renders every site's tiers, and each tier's charts draw the samples of
// its last minute. Then the cloud tier's only replica dies with its model
// gone, so it cannot start again, and the page shows the cloud tier down.
// The page logs no error.
func TestStatusPageOfUp(t *testing.T) {
	ctx, pageErrors := testsupport.Browser(t)
	cp := writeObserved(t, "page")
	p := start(t, "up", "-f", cp.file)
	waitSites(t, cp.continuum, p)
	if _, err := chromedp.Run(ctx, chromedp.Navigate("http://"+cp.admin["edge"]+"/")); err != nil {
		t.Fatal(err)
	}
	testsupport.WaitPage(t, ctx, "every tier of every site", `document.querySelectorAll("tr.tier").length == 3 && ["edge/edge", "fog/fog", "cloud/cloud"].every(k => document.querySelector('tr[data-tier="' + k + '"]'))`)

	// Images flow, a batch every half second, until the edge's charts have
	// several samples with traffic (the page samples every 2s).
	samples := testSet(t).Samples
	dots := func(tier, chart, series string) int {
		return testsupport.Eval[int](t, ctx, fmt.Sprintf(`document.querySelectorAll('figure[data-tier=%q] svg[data-chart=%q] circle.pt[data-series=%q]').length`, tier, chart, series))
	}
	sent := 0
	for round := 0; dots("edge/edge", "throughput", "in") < 4 || dots("edge/edge", "latency", "p50") < 2; round++ {
		if round == 60 {
			t.Fatalf("after 30s of images the edge's charts have %d throughput and %d latency points", dots("edge/edge", "throughput", "in"), dots("edge/edge", "latency", "p50"))
		}
		sendHTTP(t, cp.funnel["edge"], samples[sent:sent+20], fmt.Sprintf("page-%d-", round), 2)
		sent += 20
		time.Sleep(500 * time.Millisecond)
	}
	for _, tier := range []string{"edge/edge", "fog/fog", "cloud/cloud"} {
		if state := testsupport.Eval[string](t, ctx, fmt.Sprintf(`document.querySelector('tr[data-tier=%q]').dataset.state`, tier)); state != "ok" {
			t.Errorf("tier %s shows %q while images flow, want ok", tier, state)
		}
	}

	// The cloud's only replica dies and cannot start again; images that
	// reach the cloud wait, and its connector marks the tier down.
	if err := os.Rename(cp.cloudModel, cp.cloudModel+".gone"); err != nil {
		t.Fatal(err)
	}
	killChild(t, p, "inference", "--tier=cloud")
	sendHTTP(t, cp.funnel["edge"], samples[sent:sent+300], "page-down-", 4)
	testsupport.WaitPage(t, ctx, "the cloud tier shown down", `(() => { const r = document.querySelector('tr[data-tier="cloud/cloud"]'); return r && r.dataset.state == "down" && r.innerText.includes("DOWN"); })()`)
	if text := testsupport.Eval[string](t, ctx, `document.getElementById("problems").innerText`); !strings.Contains(text, "tier cloud: down since") {
		t.Errorf("the problems do not name the cloud tier down:\n%s", text)
	}
	if errs := pageErrors(); len(errs) > 0 {
		t.Errorf("the page logged errors: %v", errs)
	}
	if *pageScreenshot != "" {
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(*pageScreenshot, png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	p.stop(t, syscall.SIGTERM, "SIGTERM", 30*time.Second)
}
