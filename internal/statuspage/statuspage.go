// Package statuspage serves the status page of `ddnn up`'s admin address:
// at / a small web page, embedded in the binary (HTML, CSS and its own
// JavaScript; nothing from elsewhere), that shows what `ddnn status` shows,
// refreshed every interval from /v1/status, and charts each tier's latency
// (p50, p99) and throughput (in, out) over the last minute from
// /v1/status/history.
//
// It owns the page and the history: a sampler that reads the pipeline's
// status every interval while the page is open (from the first
// /v1/status/history request until Idle passes without one) and keeps
// each tier's points of the last window in a bounded ring. It does not
// read the pipeline itself (the SnapshotFunc it is given does) and does
// not serve /v1/status. Every route is a read: GET (and HEAD) only.
package statuspage

import (
	"cmp"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"time"

	"github.com/ddnn-continuum/ddnn/internal/httpapi"
)

//go:embed assets
var assets embed.FS

// Routes of the page besides httpapi.PathStatusHistory.
const (
	PathPage   = "/"
	PathStatic = "/static/" // + an asset's name: the page's script, style and icon
)

// contentSecurityPolicy lets the page load only its own script, style and
// icon and fetch only its own origin; no inline script or style runs.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
	"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// Options tune the page. The zero value takes every default.
type Options struct {
	// Interval is the time between samples and between the page's
	// refreshes (default 2s).
	Interval time.Duration
	// Window is how much history the charts show (default 1 minute).
	Window time.Duration
	// Idle stops the sampling when the page has not asked for the history
	// for this long (default Window): a page nobody has open costs nothing.
	Idle time.Duration
	// Timeout bounds one snapshot (default 10s).
	Timeout time.Duration
	// Logger receives a warning when sampling starts failing; nil discards.
	Logger *slog.Logger
}

// Page is the status page and the history behind its charts.
type Page struct {
	sampler *sampler
	index   []byte
	static  fs.FS
}

// New makes the page of the pipeline that snapshot reads. Register serves
// it; Run samples for its charts.
func New(snapshot SnapshotFunc, o Options) (*Page, error) {
	if snapshot == nil {
		return nil, errors.New("status page: no snapshot func")
	}
	o.Interval = cmp.Or(o.Interval, 2*time.Second)
	o.Window = cmp.Or(o.Window, time.Minute)
	o.Idle = cmp.Or(o.Idle, o.Window)
	o.Timeout = cmp.Or(o.Timeout, 10*time.Second)
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	var errs []error
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"interval", o.Interval}, {"window", o.Window}, {"idle", o.Idle}, {"timeout", o.Timeout}} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("status page: %s %v: must be positive", d.name, d.v))
		}
	}
	if o.Interval > 0 && o.Window > 0 && o.Window < o.Interval {
		errs = append(errs, fmt.Errorf("status page: window %v is shorter than the interval %v", o.Window, o.Interval))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	index, err := assets.ReadFile("assets/index.html")
	if err != nil {
		return nil, fmt.Errorf("status page: %w", err)
	}
	static, err := fs.Sub(assets, "assets/static")
	if err != nil {
		return nil, fmt.Errorf("status page: %w", err)
	}
	return &Page{sampler: newSampler(snapshot, o), index: index, static: static}, nil
}

// Run samples the status for the charts while the page is open, until
// ctx ends.
func (p *Page) Run(ctx context.Context) error { return p.sampler.run(ctx) }

// Register serves the page at PathPage, its assets under PathStatic and
// the history at httpapi.PathStatusHistory on mux, for GET only. The page
// reads httpapi.PathStatus, which mux must serve too.
func (p *Page) Register(mux *http.ServeMux) {
	mux.Handle("GET "+PathPage+"{$}", secure(http.HandlerFunc(p.serveIndex)))
	mux.Handle("GET "+PathStatic+"{asset}", secure(http.HandlerFunc(p.serveStatic)))
	mux.Handle("GET "+httpapi.PathStatusHistory, secure(http.HandlerFunc(p.serveHistory)))
}

func (p *Page) serveIndex(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Write(p.index)
}

func (p *Page) serveStatic(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("asset")
	if _, err := fs.Stat(p.static, name); err != nil {
		http.NotFound(w, r)
		return
	}
	http.ServeFileFS(w, r, p.static, name)
}

func (p *Page) serveHistory(w http.ResponseWriter, _ *http.Request) {
	p.sampler.ask()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(p.sampler.history())
}

// secure sets the headers every answer of the page carries.
func secure(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", contentSecurityPolicy)
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Referrer-Policy", "no-referrer")
		if hd.Get("Cache-Control") == "" {
			hd.Set("Cache-Control", "no-cache")
		}
		h.ServeHTTP(w, r)
	})
}
