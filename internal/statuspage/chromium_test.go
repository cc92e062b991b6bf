package statuspage_test

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/ddnn-continuum/ddnn/internal/statuspage"
	"github.com/ddnn-continuum/ddnn/internal/testsupport"
)

var screenshot = flag.String("screenshot", "", "write a PNG of the page as TestPageInChromium sees it to this file (docs/images/status-page.png: go test -run TestPageInChromium ./internal/statuspage/ -args -screenshot=$PWD/docs/images/status-page.png)")

// drawnPoints counts, per "site/tier chart series", the dots each chart
// draws and the points of its lines, and whether every dot is inside the
// chart.
const drawnPoints = `(() => {
  const out = {};
  for (const fig of document.querySelectorAll("figure.tier-charts")) {
    for (const svg of fig.querySelectorAll("svg[data-chart]")) {
      const w = svg.viewBox.baseVal.width, h = svg.viewBox.baseVal.height;
      for (const c of svg.querySelectorAll("circle.pt")) {
        const k = fig.dataset.tier + " " + svg.dataset.chart + " " + c.dataset.series;
        const e = out[k] || (out[k] = {dots: 0, line: 0, outside: 0});
        e.dots++;
        if (!(c.cx.baseVal.value >= 0 && c.cx.baseVal.value <= w && c.cy.baseVal.value >= 0 && c.cy.baseVal.value <= h)) e.outside++;
      }
      for (const l of svg.querySelectorAll("polyline.line")) {
        const k = fig.dataset.tier + " " + svg.dataset.chart + " " + l.dataset.series;
        const e = out[k] || (out[k] = {dots: 0, line: 0, outside: 0});
        e.line += l.points.numberOfItems;
      }
    }
  }
  return JSON.stringify(out);
})()`

type drawn struct{ Dots, Line, Outside int }

// TestPageInChromium opens the page in headless Chromium while the three
// sites' status changes every sample (the fog tier goes down, the cloud
// tier dead-letters) and checks that the page refreshes to the newest
// status, renders every site's endpoints and every tier, shows the down
// tier as down (text and colour) and the dead-lettering one as such,
// lists the problems, draws each tier's last minute (one dot per sample
// with a value, joined by lines) and, when the status stops answering,
// says so; the page logs no error (a Content-Security-Policy violation
// is one).
func TestPageInChromium(t *testing.T) {
	ctx, pageErrors := testsupport.Browser(t)
	c := &continuum{steps: 40, downStep: 28}
	srv := servePage(t, c.next, c.current, statuspage.Options{Interval: 100 * time.Millisecond})
	if _, err := chromedp.Run(ctx, chromedp.Navigate(srv.URL)); err != nil {
		t.Fatal(err)
	}

	// Refreshing: the last step is shown, sampled long after the page's
	// first read.
	final := c.at(c.steps - 1)
	asOf := "as of " + final.Time.Format(time.TimeOnly) + " UTC"
	testsupport.WaitPage(t, ctx, "the newest status", fmt.Sprintf(`document.getElementById("freshness").textContent.includes(%q)`, asOf))

	// What the charts must draw: each sample of the last minute with a
	// value, per tier and series.
	want := map[string]drawn{}
	from := final.Time.Add(-time.Minute)
	for i := range c.steps {
		s := c.at(i)
		if s.Time.Before(from) {
			continue
		}
		for _, site := range s.Sites {
			for _, tier := range site.Tiers {
				for _, v := range []struct {
					series string
					has    bool
				}{{"latency p50", tier.P50Seconds != nil}, {"latency p99", tier.P99Seconds != nil}, {"throughput in", true}, {"throughput out", true}} {
					if v.has {
						k := site.Name + "/" + tier.Name + " " + v.series
						d := want[k]
						d.Dots++
						d.Line++
						want[k] = d
					}
				}
			}
		}
	}
	wantJSON, _ := json.Marshal(want)
	var got map[string]drawn
	deadline := time.Now().Add(30 * time.Second)
	for {
		got = nil
		json.Unmarshal([]byte(testsupport.Eval[string](t, ctx, drawnPoints)), &got)
		if gotJSON, _ := json.Marshal(got); string(gotJSON) == string(wantJSON) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the charts draw %v, want %v (a dot and a line point per sample of the last minute with a value)", got, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got["edge/edge latency p50"].Dots < 30 || got["fog/fog latency p50"].Dots == 0 {
		t.Errorf("the charts hold less than the last minute: %v", got)
	}

	// Every site's endpoints and every tier, with its state.
	for _, site := range final.Sites {
		if n := testsupport.Eval[int](t, ctx, fmt.Sprintf(`document.querySelectorAll('section[data-site=%q] .endpoint.up').length`, site.Name)); n != 3 {
			t.Errorf("site %s: %d endpoints shown answering, want Kafka, funnel and admin", site.Name, n)
		}
		for _, tier := range site.Tiers {
			sel := fmt.Sprintf(`tr[data-tier="%s/%s"]`, site.Name, tier.Name)
			row := testsupport.Eval[map[string]string](t, ctx, fmt.Sprintf(`(() => { const r = document.querySelector(%q); return r ? {name: r.querySelector("th").textContent, state: r.dataset.state, text: r.innerText, bg: getComputedStyle(r).backgroundColor} : {}; })()`, sel))
			if row["name"] != tier.Name || row["state"] != tier.State {
				t.Errorf("%s: shown as %q in state %q, want %q in %q", sel, row["name"], row["state"], tier.Name, tier.State)
			}
			for _, part := range []string{tier.Model.SHA256, fmt.Sprintf("%d/%d", tier.ReadyReplicas, tier.DesiredReplicas), tier.Runtime} {
				if !strings.Contains(row["text"], part) {
					t.Errorf("%s lacks %q: %q", sel, part, row["text"])
				}
			}
		}
	}
	fog := testsupport.Eval[map[string]string](t, ctx, `(() => { const r = document.querySelector('tr[data-tier="fog/fog"]'); return {text: r.innerText, bg: getComputedStyle(r).backgroundColor}; })()`)
	edgeBg := testsupport.Eval[string](t, ctx, `getComputedStyle(document.querySelector('tr[data-tier="edge/edge"]')).backgroundColor`)
	downSince := c.at(c.downStep).Time.Format(time.TimeOnly) + " UTC"
	if !strings.Contains(fog["text"], "DOWN") || !strings.Contains(fog["text"], downSince) || fog["bg"] == edgeBg {
		t.Errorf("the down fog tier does not stand out (DOWN, since %s, another colour than %s): %q, background %s", downSince, edgeBg, fog["text"], fog["bg"])
	}
	cloud := final.Sites[2].Tiers[0]
	dead := fmt.Sprintf("%d / %d", cloud.DeadLetters, cloud.DeadLettersLastMinute)
	if text := testsupport.Eval[string](t, ctx, `document.querySelector('tr[data-tier="cloud/cloud"]').innerText`); !strings.Contains(text, "DEAD-LETTERING") || !strings.Contains(text, dead) {
		t.Errorf("the dead-lettering cloud tier does not say so with its dead letters %s: %q", dead, text)
	}
	problems := testsupport.Eval[[]string](t, ctx, `[...document.querySelectorAll("#problems li")].map(li => li.textContent)`)
	if strings.Join(problems, "\n") != strings.Join(final.Problems, "\n") {
		t.Errorf("problems shown %q, want %q", problems, final.Problems)
	}
	if errs := pageErrors(); len(errs) > 0 {
		t.Errorf("the page logged errors:\n%s", strings.Join(errs, "\n"))
	}

	if *screenshot != "" {
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(*screenshot, png, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// The status stops answering: the page says so, and why.
	c.setFail(errNotAnswering)
	testsupport.WaitPage(t, ctx, "the page to say the status does not answer",
		`(f => f.classList.contains("stale") && f.textContent.includes("status not answering") && f.textContent.includes("127.0.0.1:9092 not answering"))(document.getElementById("freshness"))`)
}
