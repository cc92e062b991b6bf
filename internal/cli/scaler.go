package cli

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/ddnn-continuum/ddnn/internal/httpapi"
	"github.com/ddnn-continuum/ddnn/internal/kafka"
	"github.com/ddnn-continuum/ddnn/internal/runtime"
	"github.com/ddnn-continuum/ddnn/internal/runtime/replicas"
	"github.com/ddnn-continuum/ddnn/internal/socket"
	"github.com/ddnn-continuum/ddnn/scaler"
)

// runScaler runs the replica manager alone: it owns every tier's replicas
// through the tier's runtime, scales them by lag, and serves the replica
// sets the connectors follow (--replicas-url http://ADMIN/v1/tiers/<tier>/replicas).
func runScaler(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("scaler", "scaler -f FILE [--site NAME] [--admin ADDR] [--funnel URL] [--brokers H:P,...]", stderr)
	rf := addRoleFlags(fs, stderr, true)
	siteName := fs.String("site", "", "scale the tiers placed on this site, reading its Kafka (required when the pipeline has several sites)")
	admin := fs.String("admin", "127.0.0.1:9465", "address of /metrics, /healthz, /readyz and the replica sets")
	funnelURL := fs.String("funnel", "", "base URL of the funnel's delivery zone replicas deliver to (default: http://<the site's funnel.delivery_listen>)")
	if err := parse(fs, args); err != nil {
		return err
	}
	p, log, err := rf.load("scaler")
	if err != nil {
		return err
	}
	site, err := siteFlag(fs, p, *siteName)
	if err != nil {
		return err
	}
	sv, err := rf.onSite(p, site)
	if err != nil {
		return fmt.Errorf("%w: --site: %v", errUsage, err)
	}
	if *funnelURL == "" {
		*funnelURL = "http://" + sv.Funnel.DeliveryListen
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
	var targets []scaler.Target
	for _, t := range p.Tiers {
		if p.SiteOf(t.Name).Name != site {
			continue
		}
		rt, err := replicas.New(ctx, p, &t, replicas.Options{File: *rf.file, FunnelURL: *funnelURL, ServiceTokenFile: p.ServiceTokenPath(),
			LogLevel: fs.Lookup("log-level").Value.String(), Out: stderr, Logger: log})
		if err != nil {
			return err
		}
		runtimes[t.Name] = rt
		targets = append(targets, scaler.Target{
			Tier: t.Name, Group: p.ConsumerGroup(t.Name), Topic: p.InputTopic(t.Name),
			Min: t.Replicas.Min, Max: t.Replicas.Max, Settings: t.Scaling, Runtime: rt,
		})
	}
	reg, wrapped := newRegistry(p)
	cl, err := kafka.NewClient(&sv.Kafka, "scaler", wrapped, log)
	if err != nil {
		return fmt.Errorf("scaler: kafka client: %w", err)
	}
	defer cl.Close()
	sc, err := scaler.New(scaler.Config{Admin: kadm.NewClient(cl), Targets: targets, Registerer: wrapped, Logger: log})
	if err != nil {
		return err
	}
	mux := adminMux(reg, func() bool { return true })
	runtime.HandleReplicas(mux, func(tier string) runtime.Runtime { return runtimes[tier] })
	ln, err := socket.Listen(*admin)
	if err != nil {
		return fmt.Errorf("scaler admin: %w", err)
	}
	fmt.Fprintf(stdout, "scaler: replica sets on http://%s%s, metrics on /metrics\n", ln.Addr(), httpapi.ReplicasPath("<tier>"))
	return withAdmin(ctx, ln, mux, func(ctx context.Context) error {
		defer closeRuntimes()
		return sc.Run(ctx)
	})
}
