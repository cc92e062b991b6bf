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
// owns the replicas of every tier on its site through the tier's runtime,
// scales them by lag, and serves the replica sets the connectors follow
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
	runtimes := map[string]runtime.Runtime{}
	// Replicas stop after the scaler and before the replica sets go away.
	closeRuntimes := sync.OnceFunc(func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		var wg sync.WaitGroup
		for _, rt := range runtimes {
			wg.Go(func() { rt.Close(cctx) })
		}
		wg.Wait()
	})
	defer closeRuntimes()
	var targets []Target
	for _, t := range p.Tiers {
		if p.SiteOf(t.Name).Name != site {
			continue
		}
		rt, err := replicas.New(ctx, p, &t, replicas.Options{File: c.File, ServiceTokenFile: p.ServiceTokenPath(),
			LogLevel: c.Level, Out: stderr, Logger: log})
		if err != nil {
			return err
		}
		runtimes[t.Name] = rt
		targets = append(targets, Target{
			Tier: t.Name, Group: p.ConsumerGroup(t.Name), Topic: p.InputTopic(t.Name),
			Min: t.Replicas.Min, Max: t.Replicas.Max, Settings: t.Scaling, Runtime: rt,
		})
	}
	reg, wrapped := command.NewRegistry(p)
	cl, err := kafka.NewClient(&sv.Kafka, "scaler", wrapped, log)
	if err != nil {
		return fmt.Errorf("scaler: kafka client: %w", err)
	}
	defer cl.Close()
	sc, err := New(Config{Admin: kadm.NewClient(cl), Targets: targets, Registerer: wrapped, Logger: log})
	if err != nil {
		return err
	}
	mux := command.AdminMux(reg, func() bool { return true })
	runtime.HandleReplicas(mux, func(tier string) runtime.Runtime { return runtimes[tier] })
	ln, err := socket.Listen(c.Admin)
	if err != nil {
		return fmt.Errorf("scaler admin: %w", err)
	}
	fmt.Fprintf(stdout, "scaler: replica sets on http://%s%s, metrics on /metrics\n", ln.Addr(), httpapi.ReplicasPath("<tier>"))
	return command.WithAdmin(ctx, ln, mux, func(ctx context.Context) error {
		defer closeRuntimes()
		return sc.Run(ctx)
	})
}
