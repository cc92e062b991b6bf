package status

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/ddnn-continuum/ddnn/internal/command"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
)

// Synopsis is ddnn status's usage line.
const Synopsis = "status -f FILE [--site S] [--admin [SITE=]ADDR,...] [--watch [--interval DUR]] [--json]"

// Command is ddnn status with its flags.
type Command struct {
	File, Site string
	// Admin are --admin values: SITE=ADDR,ADDR or, for a pipeline of one
	// site, ADDR,ADDR.
	Admin    adminFlag
	Watch    bool
	Interval time.Duration
	JSON     bool
	Timeout  time.Duration
}

// adminFlag is a repeatable --admin.
type adminFlag []string

func (a *adminFlag) String() string     { return strings.Join(*a, " ") }
func (a *adminFlag) Set(v string) error { *a = append(*a, v); return nil }

// Flags binds c to ddnn status's flags.
func (c *Command) Flags(fs *flag.FlagSet) {
	command.FileFlag(fs, &c.File)
	fs.StringVar(&c.Site, "site", "", "only this site (default: every site)")
	fs.Var(&c.Admin, "admin", "the admin addresses `SITE=ADDR,...` of a site's roles run apart (each connector's, uplink's and the scaler's --admin), read instead of its admin.listen, where ddnn up serves them all; repeat it per site (SITE= may be left out on a pipeline of one site)")
	fs.BoolVar(&c.Watch, "watch", false, "read and print again every --interval until interrupted")
	fs.DurationVar(&c.Interval, "interval", 2*time.Second, "with --watch, how often to read")
	fs.BoolVar(&c.JSON, "json", false, "print the snapshot as JSON (with --watch, one object per line)")
	fs.DurationVar(&c.Timeout, "timeout", 3*time.Second, "how long each read (an HTTP request, a Kafka request) may take")
}

// Run reads the pipeline's state and prints it, once or until ctx ends
// with --watch. Once, it fails when something did not answer (a site's
// Kafka, funnel or admin address), naming each.
func (c *Command) Run(ctx context.Context, stdout, _ io.Writer) error {
	if c.Watch && c.Interval <= 0 {
		return command.Usagef("--interval must be positive")
	}
	if c.Timeout <= 0 {
		return command.Usagef("--timeout must be positive")
	}
	p, err := command.LoadPipeline(c.File)
	if err != nil {
		return err
	}
	o := Options{Site: c.Site, Timeout: c.Timeout}
	if c.Site != "" {
		if _, err := p.Site(c.Site); err != nil {
			return command.Usagef("--site: %v", err)
		}
	}
	if o.Admin, err = parseAdmin(p, c.Admin); err != nil {
		return err
	}
	colour := !c.JSON && useColour(stdout, os.Getenv)
	for {
		start := time.Now()
		snap, err := Collect(ctx, p, o)
		if err != nil {
			if c.Watch && ctx.Err() != nil {
				return nil
			}
			return err
		}
		if c.Watch && colour {
			io.WriteString(stdout, "\x1b[H\x1b[2J") // clear the screen, home
		}
		if c.JSON {
			if err := json.NewEncoder(stdout).Encode(snap); err != nil {
				return err
			}
		} else {
			if nothingAnswered(snap) && !c.Watch {
				return notRunning(snap)
			}
			Print(stdout, snap, colour)
		}
		if !c.Watch {
			return unanswered(snap)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Until(start.Add(c.Interval))):
		}
	}
}

// parseAdmin reads --admin values into addresses by site.
func parseAdmin(p *pipeline.Pipeline, values []string) (map[string][]string, error) {
	if len(values) == 0 {
		return nil, nil
	}
	sites := p.Sites()
	out := map[string][]string{}
	for _, v := range values {
		site, addrs, named := strings.Cut(v, "=")
		if !named {
			if len(sites) != 1 {
				return nil, command.Usagef("--admin %q: name the site (SITE=ADDR,...): the pipeline has %d sites", v, len(sites))
			}
			site, addrs = sites[0].Name, v
		}
		if _, err := p.Site(site); err != nil {
			return nil, command.Usagef("--admin %q: %v", v, err)
		}
		list := command.SplitList(addrs)
		if len(list) == 0 {
			return nil, command.Usagef("--admin %q: no address", v)
		}
		out[site] = append(out[site], list...)
	}
	return out, nil
}

// endpoints are every site's Kafka, funnel and admin endpoints, named.
func endpoints(s Snapshot) (names []string, es []Endpoint) {
	for _, site := range s.Sites {
		names = append(names, "site "+site.Name+": kafka", "site "+site.Name+": funnel", "site "+site.Name+": admin")
		es = append(es, site.Kafka, site.Funnel, site.Admin)
	}
	return names, es
}

// nothingAnswered reports whether no endpoint of any site answered: the
// pipeline is not running (or runs elsewhere).
func nothingAnswered(s Snapshot) bool {
	_, es := endpoints(s)
	for _, e := range es {
		if e.Up {
			return false
		}
	}
	return true
}

// notRunning is the error for a pipeline nothing of which answered: one
// line per thing asked.
func notRunning(s Snapshot) error {
	names, es := endpoints(s)
	lines := []string{fmt.Sprintf("pipeline %s is not running: nothing answered", s.Pipeline)}
	for i, e := range es {
		lines = append(lines, fmt.Sprintf("  %s %s: %s", names[i], printable(e.Address), printable(e.Error)))
	}
	return errors.New(strings.Join(lines, "\n"))
}

// unanswered is the error when something did not answer, nil otherwise.
func unanswered(s Snapshot) error {
	if nothingAnswered(s) {
		return notRunning(s)
	}
	names, es := endpoints(s)
	var lines []string
	for i, e := range es {
		if !e.Up {
			lines = append(lines, fmt.Sprintf("  %s %s: %s", names[i], printable(e.Address), printable(e.Error)))
		}
	}
	if len(lines) == 0 {
		return nil
	}
	return errors.New(strings.Join(append([]string{fmt.Sprintf("%d of %d did not answer:", len(lines), len(es))}, lines...), "\n"))
}

// useColour reports whether to colour what is written to w: only a
// terminal, and only while NO_COLOR (https://no-color.org) is unset or
// empty.
func useColour(w io.Writer, getenv func(string) string) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd())) && getenv("NO_COLOR") == ""
}
