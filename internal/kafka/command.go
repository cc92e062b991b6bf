package kafka

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/ddnn-continuum/ddnn/internal/command"
	"github.com/ddnn-continuum/ddnn/internal/wire"
)

// Synopses of ddnn broker and ddnn broker repair.
const (
	BrokerSynopsis = "broker -f FILE [--site NAME] [--listen ADDR] [--ephemeral] [--trust-data]\n       ddnn broker repair -f FILE [--site NAME]"
	RepairSynopsis = "broker repair -f FILE [--site NAME]"
)

// BrokerCommand is ddnn broker with its flags: a site's embedded broker
// alone.
type BrokerCommand struct {
	File, TiersOn, Site, Listen string
	Ephemeral, TrustData        bool
	command.Log
}

// Flags binds c to ddnn broker's flags.
func (c *BrokerCommand) Flags(fs *flag.FlagSet) {
	command.FileFlag(fs, &c.File)
	command.TiersOnFlag(fs, &c.TiersOn)
	fs.StringVar(&c.Listen, "listen", "", "address to listen on (default: the site's kafka.embedded_listen)")
	fs.StringVar(&c.Site, "site", "", "the site whose broker this is, with the topics that live there (required when the pipeline has several sites)")
	fs.BoolVar(&c.Ephemeral, "ephemeral", false, "keep everything in memory: the topics are lost when the broker stops (default: kept in the site's kafka.embedded_data_dir)")
	fs.BoolVar(&c.TrustData, "trust-data", false, "keep the records of a data directory written by a broker that required less (TLS, SASL, ACLs) than this one; by default such a start is refused")
	c.Log.Flags(fs)
}

// Run runs the site's broker until ctx ends.
func (c *BrokerCommand) Run(ctx context.Context, stdout, stderr io.Writer) error {
	role := command.Role{File: c.File, TiersOn: c.TiersOn, Log: c.Log}
	p, log, err := role.Load(stderr, "broker")
	if err != nil {
		return err
	}
	site, err := command.Site(p, c.Site)
	if err != nil {
		return err
	}
	s, _ := p.Site(site)
	var opts []BrokerOpt
	if c.TrustData {
		opts = append(opts, TrustData())
	}
	b, err := StartSiteBroker(p, s, c.Listen, c.Ephemeral, log, opts...)
	if err != nil {
		return err
	}
	defer b.Close()
	storage := "in memory with --ephemeral: data is lost when it stops"
	if b.DataDir() != "" {
		storage = "data kept in " + b.DataDir()
	}
	fmt.Fprintf(stdout, "embedded Kafka broker of site %s on %s (%s); topics: %s\n", s.Name, b.Addr(), storage, strings.Join(p.TopicsOn(s.Name), ", "))
	<-ctx.Done()
	return nil
}

// RepairCommand is ddnn broker repair with its flags.
type RepairCommand struct {
	File, Site string
}

// Flags binds c to ddnn broker repair's flags.
func (c *RepairCommand) Flags(fs *flag.FlagSet) {
	command.FileFlag(fs, &c.File)
	fs.StringVar(&c.Site, "site", "", "the site whose broker's data directory to repair (required when the pipeline has several sites)")
}

// Run repairs the site's stopped embedded broker's data directory
// (RepairDataDir) and prints what it dropped, naming the messages by
// their ids.
func (c *RepairCommand) Run(_ context.Context, stdout, _ io.Writer) error {
	p, err := command.LoadPipeline(c.File)
	if err != nil {
		return err
	}
	site, err := command.Site(p, c.Site)
	if err != nil {
		return err
	}
	s, _ := p.Site(site)
	dir, err := p.SiteDataDir(s)
	if err != nil {
		return fmt.Errorf("embedded broker data dir: %w", err)
	}
	rep, err := RepairDataDir(dir)
	if rep != nil {
		rep.Write(stdout, wire.HeaderID)
	}
	return err
}
