package cli

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/ddnn-continuum/ddnn/internal/kafka"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/runtime"
	"github.com/ddnn-continuum/ddnn/internal/runtime/replicas"
	"github.com/ddnn-continuum/ddnn/internal/socket"
	"github.com/ddnn-continuum/ddnn/scaler"
)

// runScaler runs the replica manager alone: it owns the replicas of every
// tier on its site through the tier's runtime (scaler.StartTiers), scales
// those whose size may change by lag, and serves the replica
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
	if p, err = rf.onSite(p, site); err != nil {
		return fmt.Errorf("%w: --site: %v", errUsage, err)
	}
	if *funnelURL == "" {
		*funnelURL = "http://" + p.Funnel.DeliveryListen
	}
	tokenFile := ""
	if p.Auth.Service == pipeline.AuthToken {
		tokenFile = p.Path(p.Auth.ServiceTokenFile)
	}
	tiers, err := scaler.StartTiers(ctx, p, site, replicas.Options{File: *rf.file, FunnelURL: *funnelURL, ServiceTokenFile: tokenFile,
		LogLevel: fs.Lookup("log-level").Value.String(), Out: stderr, Logger: log})
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
	reg, wrapped := newRegistry(p)
	cl, err := kafka.NewClient(&p.Kafka, "scaler", wrapped, log)
	if err != nil {
		return fmt.Errorf("scaler: kafka client: %w", err)
	}
	defer cl.Close()
	sc, err := scaler.New(scaler.Config{Admin: kadm.NewClient(cl), Targets: tiers.Targets, Registerer: wrapped, Logger: log})
	if err != nil {
		return err
	}
	mux := adminMux(reg, func() bool { return true })
	mux.Handle("GET /v1/tiers/{tier}/replicas", runtime.ListHandler(func(tier string) runtime.Runtime { return tiers.Runtimes[tier] }))
	ln, err := socket.Listen(*admin)
	if err != nil {
		return fmt.Errorf("scaler admin: %w", err)
	}
	fmt.Fprintf(stdout, "scaler: replica sets on http://%s/v1/tiers/<tier>/replicas, metrics on /metrics\n", ln.Addr())
	return withAdmin(ctx, ln, mux, func(ctx context.Context) error {
		defer closeTiers()
		return sc.Run(ctx)
	})
}
