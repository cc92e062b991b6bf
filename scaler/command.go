package scaler

import (
	"context"
	"flag"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/ddnn-continuum/ddnn/internal/command"
	"github.com/ddnn-continuum/ddnn/internal/httpapi"
	"github.com/ddnn-continuum/ddnn/internal/kafka"
	"github.com/ddnn-continuum/ddnn/internal/runtime"
	"github.com/ddnn-continuum/ddnn/internal/runtime/replicas"
	"github.com/ddnn-continuum/ddnn/internal/socket"
)

// Synopsis is ddnn scaler's usage line.
const Synopsis = "scaler -f FILE [--site NAME] [--admin ADDR] [--brokers H:P,...]"

// Command is ddnn scaler with its flags: the replica manager alone. It
// owns the replicas of every tier on its site through the tier's runtime
// (StartTiers), scales those whose size may change by lag, and serves the replica sets the connectors follow
// (--replicas-url http://ADMIN/v1/tiers/<tier>/replicas).
type Command struct {
	command.Role
	Site, Admin string
}

// Flags binds c to ddnn scaler's flags.
func (c *Command) Flags(fs *flag.FlagSet) {
	c.Role.Flags(fs)
	fs.StringVar(&c.Site, "site", "", "scale the tiers placed on this site, reading its Kafka (required when the pipeline has several sites)")
	fs.StringVar(&c.Admin, "admin", "127.0.0.1:9465", "address of /metrics, /healthz, /readyz and the replica sets")
}

// Run runs the replica manager until ctx ends; its replicas stop with it.
func (c *Command) Run(ctx context.Context, stdout, stderr io.Writer) error {
	p, log, err := c.Load(stderr, "scaler")
	if err != nil {
		return err
	}
	site, err := command.Site(p, c.Site)
	if err != nil {
		return err
	}
	sv, err := c.OnSite(p, site)
	if err != nil {
		return err
	}
	tiers, err := StartTiers(ctx, p, site, replicas.Options{File: c.File, ServiceTokenFile: p.ServiceTokenPath(),
		LogLevel: c.Level, Out: stderr, Logger: log})
	if err != nil {
		return err
	}
	// Replicas stop after the scaler and before the replica sets go away.
	closeTiers := sync.OnceFunc(func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := tiers.Close(cctx); err != nil {
			log.Warn("stopping replicas", "err", err)
		}
	})
	defer closeTiers()
	reg, wrapped := command.NewRegistry(p)
	cl, err := kafka.NewClient(&sv.Kafka, "scaler", wrapped, log)
	if err != nil {
		return fmt.Errorf("scaler: kafka client: %w", err)
	}
	defer cl.Close()
	sc, err := New(Config{Admin: kadm.NewClient(cl), Targets: tiers.Targets, Registerer: wrapped, Logger: log})
	if err != nil {
		return err
	}
	mux := command.AdminMux(reg, sc.Ready)
	runtime.HandleReplicas(mux, func(tier string) runtime.Runtime { return tiers.Runtimes[tier] })
	ln, err := socket.Listen(c.Admin)
	if err != nil {
		return fmt.Errorf("scaler admin: %w", err)
	}
	fmt.Fprintf(stdout, "scaler: replica sets on http://%s%s, metrics on /metrics\n", ln.Addr(), httpapi.ReplicasPath("<tier>"))
	return command.WithAdmin(ctx, ln, mux, func(ctx context.Context) error {
		defer closeTiers()
		return sc.Run(ctx)
	})
}
