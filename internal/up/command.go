package up

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"strings"

	"github.com/ddnn-continuum/ddnn/internal/command"
	"github.com/ddnn-continuum/ddnn/internal/onnx"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/models"
)

// Synopsis is ddnn up's usage line and help.
const Synopsis = `up -f FILE [--site NAME] [--ephemeral] [--trust-data] [--monolith] [--link-url 'FROM->TO=URL' ...]

Runs the pipeline on this machine: every site of a pipeline with sites:
(each with its own broker, funnel and admin), or the one given by --site.

--monolith runs the cloud-only baseline instead: every tier placed on the
last tier's site, where one ddnn monolith process runs them all in place of
the replicas, connectors and scaler; the results stay on their site, and a
site left with nothing to run is skipped.

--link-url makes the uplink of the link FROM->TO post to URL instead of the
receiving site's funnel.url, such as a WAN proxy in front of it (quote it:
the shell reads '>').

SIGHUP reloads the pipeline file (see docs/apply.md). SIGUSR2 restarts
ddnn up in place, for a new binary at the path it was started from: it
stops the pipeline, keeping the funnels' and the admin's listening sockets
open, and executes that binary with the same arguments, which takes them
over; sends made meanwhile wait instead of being refused.`

// Command is ddnn up with its flags.
type Command struct {
	File, ORTLib, Site             string
	Ephemeral, TrustData, Monolith bool
	// LinkURLs are the --link-url flags.
	LinkURLs map[pipeline.Link]string
	command.Log
}

// Flags binds c to ddnn up's flags.
func (c *Command) Flags(fs *flag.FlagSet) {
	command.FileFlag(fs, &c.File)
	onnx.LibFlag(fs, &c.ORTLib)
	fs.StringVar(&c.Site, "site", "", "run only this site of a pipeline with sites: (default: every site, each with its own broker, funnel and admin)")
	fs.BoolVar(&c.Ephemeral, "ephemeral", false, "keep the embedded broker in memory: its topics are lost when ddnn up stops (default: kept in kafka.embedded_data_dir)")
	fs.BoolVar(&c.TrustData, "trust-data", false, "keep the records of a data directory written by a broker that required less (TLS, SASL, ACLs) than this one; by default such a start is refused")
	fs.BoolVar(&c.Monolith, "monolith", false, "run the cloud-only baseline: every tier on the last tier's site in one ddnn monolith process, the results staying on their site")
	c.LinkURLs = map[pipeline.Link]string{}
	fs.Func("link-url", "send a link's uplink elsewhere: with `FROM->TO=URL` the uplink of link FROM->TO posts to URL instead of site TO's funnel.url, such as a WAN proxy (repeatable)", func(v string) error {
		l, u, err := parseLinkURL(v)
		if err != nil {
			return err
		}
		if _, ok := c.LinkURLs[l]; ok {
			return fmt.Errorf("%s given twice", l)
		}
		c.LinkURLs[l] = u
		return nil
	})
	c.Log.Flags(fs)
}

// Run checks the models' chain and runs the pipeline until ctx ends. On
// RestartSignal it stops the pipeline and replaces itself by the binary
// it was started from (see RestartSignal); when that exec fails it logs
// why and runs the pipeline again.
func (c *Command) Run(ctx context.Context, stdout, stderr io.Writer) error {
	log, err := c.Logger(stderr, "")
	if err != nil {
		return err
	}
	p, err := command.LoadPipeline(c.File)
	if err != nil {
		return err
	}
	// Check the chain before starting anything: a broken chain would only
	// show up as replicas failing to start.
	lib, err := onnx.Init(c.ORTLib)
	if err != nil {
		return err
	}
	if _, err := models.Check(p); err != nil {
		return err
	}
	// A head declared probabilities that gives logits would have its
	// records refused one by one: say so before they are (the replicas
	// warn too, from a probe). A missing test set is not worth a word here.
	if warnings, err := models.CheckScores(p); err == nil {
		for _, w := range warnings {
			log.Warn(w)
		}
	}
	restart := newRestarter(log.With("component", "up"), c.File, c.Ephemeral)
	defer restart.h.close()
	for {
		err = c.runOnce(ctx, p, lib, stdout, stderr, log, restart)
		if err != nil || !restart.h.restartingNow() || ctx.Err() != nil {
			return err
		}
		err = restart.exec()
		log.Error("restart: the exec failed; starting the pipeline again with this binary", "component", "up", "err", err)
		if p, err = command.LoadPipeline(c.File); err != nil {
			return err
		}
	}
}

// runOnce runs the pipeline until ctx ends or RestartSignal stops it.
func (c *Command) runOnce(ctx context.Context, p *pipeline.Pipeline, lib string, stdout, stderr io.Writer, log *slog.Logger, restart *restarter) error {
	ctx, stopWatch := restart.watch(ctx)
	defer stopWatch()
	err := Run(ctx, Config{
		handover:  restart.h,
		Pipeline:  p,
		File:      c.File,
		ORTLib:    lib,
		Out:       stderr,
		Announce:  stdout,
		Logger:    log,
		Ephemeral: c.Ephemeral,
		TrustData: c.TrustData,
		Site:      c.Site,
		Monolith:  c.Monolith,
		LinkURLs:  c.LinkURLs,
		LogLevel:  c.Level,
	})
	var le *LinkError
	if errors.As(err, &le) {
		return command.Usagef("--link-url: %v", err)
	}
	return err
}

// parseLinkURL reads FROM->TO=URL.
func parseLinkURL(v string) (pipeline.Link, string, error) {
	link, raw, ok := strings.Cut(v, "=")
	from, to, ok2 := strings.Cut(link, "->")
	if !ok || !ok2 || from == "" || to == "" || raw == "" {
		return pipeline.Link{}, "", errors.New("want FROM->TO=URL, such as 'edge->fog=http://127.0.0.1:18180'")
	}
	l := pipeline.Link{From: from, To: to}
	if u, err := url.Parse(raw); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return l, "", fmt.Errorf("%s: %q is not an http(s) URL", l, raw)
	}
	return l, strings.TrimSuffix(raw, "/"), nil
}
