package testsupport

import (
	"context"
	"fmt"
	"os/exec"
	"sync"
	"testing"
	"time"

	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// Browser starts headless Chromium (Debian's chromium on PATH), stopped
// when the test ends, and collects the errors its pages log or throw (a
// Content-Security-Policy violation is one). The test skips, saying why,
// when chromium is not installed.
func Browser(tb testing.TB) (ctx context.Context, pageErrors func() []string) {
	tb.Helper()
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		tb.Skipf("chromium is not installed (Debian: apt-get install chromium; make deps installs it): %v", err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromium),
		chromedp.NoSandbox, chromedp.Flag("headless", "new"), chromedp.WindowSize(1360, 900))
	alloc, stopAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	tb.Cleanup(stopAlloc)
	var mu sync.Mutex
	var errs []string
	// No timeout on this context: its end stops the browser.
	ctx, stop := chromedp.NewContext(alloc, chromedp.WithListener(func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch ev := ev.(type) {
		case *cdplog.EventEntryAdded:
			if ev.Entry.Level == cdplog.EntryLevelError {
				errs = append(errs, fmt.Sprintf("%s (%s)", ev.Entry.Text, ev.Entry.URL))
			}
		case *runtime.EventExceptionThrown:
			d := ev.ExceptionDetails
			desc := ""
			if d.Exception != nil {
				desc = d.Exception.Description
			}
			errs = append(errs, fmt.Sprintf("%s %s (%s:%d:%d)", d.Text, desc, d.URL, d.LineNumber+1, d.ColumnNumber+1))
		}
	}))
	tb.Cleanup(stop)
	return ctx, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), errs...)
	}
}

// WaitPage polls the JavaScript expression want until it is true, within
// a minute, failing the test with what it waited for and what the page
// shows.
func WaitPage(tb testing.TB, ctx context.Context, what, want string) {
	tb.Helper()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](want, chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(60*time.Second))); err != nil {
		text, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.innerText`))
		tb.Fatalf("waited for %s (%s): %v\nthe page shows:\n%s", what, want, err, text)
	}
}

// Eval is the value of a JavaScript expression on the page.
func Eval[T any](tb testing.TB, ctx context.Context, expr string) T {
	tb.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		tb.Fatalf("%s: %v", expr, err)
	}
	return v
}
