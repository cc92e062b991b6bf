package apply

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/ddnn-continuum/ddnn/internal/auth"
	"github.com/ddnn-continuum/ddnn/internal/command"
	"github.com/ddnn-continuum/ddnn/internal/httpapi"
	"github.com/ddnn-continuum/ddnn/internal/onnx"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/wire"
)

// Synopsis is ddnn apply's usage line.
const Synopsis = "apply -f FILE [--site S] [--dry-run]"

// Command is ddnn apply: it plans the change from the pipeline each
// site's `ddnn up` runs to the one in the file and prints the plan; unless
// DryRun, it then has each site's ddnn up apply it (httpapi.PathApply),
// which ddnn up does when FILE is the file it runs as planned.
type Command struct {
	File   string
	Site   string
	DryRun bool
	// Timeout bounds the read of one site's running pipeline.
	Timeout time.Duration
	// ApplyTimeout bounds one site's apply, rollouts included.
	ApplyTimeout time.Duration
	// ORTLib is the ONNX Runtime library that reads the models of a
	// plan that changes one (default: onnx.Init's).
	ORTLib string
}

// Flags binds the command's flags.
func (c *Command) Flags(fs *flag.FlagSet) {
	command.FileFlag(fs, &c.File)
	fs.StringVar(&c.Site, "site", "", "plan against this site's ddnn up only (default: every site of the pipeline)")
	fs.BoolVar(&c.DryRun, "dry-run", false, "print the plan and change nothing")
	fs.DurationVar(&c.Timeout, "timeout", 5*time.Second, "how long to wait for each site's admin address to answer")
	fs.DurationVar(&c.ApplyTimeout, "apply-timeout", 5*time.Minute, "how long to wait for each site's ddnn up to apply the plan, rollouts included")
	onnx.LibFlag(fs, &c.ORTLib)
}

// Run reads each site's running pipeline, prints the plan against the
// file and fails when anything is refused (a model change whose chain
// does not pass `ddnn models check` included).
func (c *Command) Run(ctx context.Context, stdout, _ io.Writer) error {
	if c.Timeout <= 0 {
		return command.Usagef("--timeout %s: must be positive", c.Timeout)
	}
	if c.ApplyTimeout <= 0 {
		return command.Usagef("--apply-timeout %s: must be positive", c.ApplyTimeout)
	}
	p, err := command.LoadPipeline(c.File)
	if err != nil {
		return err
	}
	if c.ORTLib != "" { // else a plan that changes a model loads the default
		if _, err := onnx.Init(c.ORTLib); err != nil {
			return err
		}
	}
	sites := p.Sites()
	if c.Site != "" {
		s, err := p.Site(c.Site)
		if err != nil {
			return command.Usagef("--site: %v", err)
		}
		sites = []pipeline.Site{*s}
	}
	next, err := Load(p)
	if err != nil {
		return fmt.Errorf("%s: %w", c.File, err)
	}
	client := &http.Client{Timeout: c.Timeout}
	refused, changes := 0, 0
	for i := range sites {
		s := &sites[i]
		running, err := fetch(ctx, client, s.Admin.Listen)
		if err != nil {
			return fmt.Errorf("site %s: %w", s.Name, err)
		}
		if running.Pipeline.Name != p.Name {
			return fmt.Errorf("site %s: ddnn up at %s runs pipeline %q, not %q (the name in %s): apply changes a running pipeline, it does not start another",
				s.Name, s.Admin.Listen, running.Pipeline.Name, p.Name, c.File)
		}
		plan := Compute(running, next)
		fmt.Fprintf(stdout, "site %s (ddnn up at %s), pipeline %s:\n", s.Name, s.Admin.Listen, p.Name)
		Print(stdout, &plan)
		refused += len(plan.Refused)
		if !plan.Empty() {
			changes++
		}
	}
	if refused > 0 {
		return fmt.Errorf("plan refused: %d setting(s) cannot change while the pipeline runs, or not to what the file says (listed above with why); nothing was changed", refused)
	}
	if c.DryRun || changes == 0 {
		return nil
	}
	d, err := next.Describe()
	if err != nil {
		return err
	}
	tokenFile := p.ServiceTokenPath()
	if p.Auth.Service == "" { // the one ddnn up made where it runs
		tokenFile = p.LocalServiceTokenPath()
	}
	tokens, err := auth.LoadTokens(tokenFile)
	if err != nil {
		return fmt.Errorf("%w (ddnn apply presents the pipeline's service token: with auth.service unset, run it in the directory ddnn up runs in)", err)
	}
	applier := &http.Client{Timeout: c.ApplyTimeout, Transport: tokens.Transport(nil)}
	for i := range sites {
		s := &sites[i]
		if err := post(ctx, applier, s.Admin.Listen, c.File, d); err != nil {
			return fmt.Errorf("site %s: %w", s.Name, err)
		}
		fmt.Fprintf(stdout, "site %s: applied\n", s.Name)
	}
	return nil
}

// post has ddnn up at the admin address apply the file it runs, which
// must be file as d describes it; it returns once ddnn up applied it.
func post(ctx context.Context, client *http.Client, admin, file string, d *Description) error {
	body, err := json.Marshal(map[string]any{"file": file, "description": d})
	if err != nil {
		return err
	}
	url := "http://" + admin + httpapi.PathApply
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("apply at %s: %w", admin, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		return nil
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	why := strings.TrimSpace(string(b))
	if eb, err := wire.DecodeErrorBody(b); err == nil && eb.Error != "" {
		why = eb.Error
	}
	return fmt.Errorf("ddnn up at %s did not apply it (%s): %s", admin, resp.Status, why)
}

// fetch reads the pipeline ddnn up runs at the admin address.
func fetch(ctx context.Context, client *http.Client, admin string) (*Spec, error) {
	url := "http://" + admin + httpapi.PathPipeline
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("nothing answers at admin address %s (is ddnn up running this pipeline there?): %w", admin, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, fmt.Errorf("%s: %s %s (is this a ddnn up admin address, of a ddnn that serves its pipeline?)", url, resp.Status, strings.TrimSpace(string(b)))
	}
	var d Description
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&d); err != nil {
		return nil, fmt.Errorf("%s: %w", url, err)
	}
	s, err := d.Spec()
	if err != nil {
		return nil, fmt.Errorf("%s: the running pipeline: %w", url, err)
	}
	return s, nil
}

// Print writes the plan: what changes live, which tiers roll out and why,
// and what is refused and why.
func Print(w io.Writer, p *Plan) {
	if p.Empty() {
		fmt.Fprintln(w, "  nothing to change: the file is the running pipeline")
		return
	}
	if len(p.Live) > 0 {
		fmt.Fprintln(w, "  live (changed in place, nothing restarted):")
		for _, c := range p.Live {
			fmt.Fprintf(w, "    %s: %s -> %s\n", c.Path, c.Old, c.New)
		}
	}
	if len(p.Rollouts) > 0 {
		fmt.Fprintln(w, "  rollout (the tier's replicas are replaced):")
		for _, r := range p.Rollouts {
			fmt.Fprintf(w, "    tier %s:\n", r.Tier)
			for _, c := range r.Changes {
				fmt.Fprintf(w, "      %s: %s -> %s\n", c.Path, c.Old, c.New)
			}
		}
	}
	if len(p.Refused) > 0 {
		fmt.Fprintln(w, "  refused (cannot change while the pipeline runs, or not to this; the plan is refused as a whole):")
		for _, c := range p.Refused {
			fmt.Fprintf(w, "    %s: %s -> %s: %s\n", c.Path, c.Old, c.New, c.Reason)
		}
	}
}
