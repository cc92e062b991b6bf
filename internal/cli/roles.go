package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"

	"github.com/ddnn-continuum/ddnn/connector"
	"github.com/ddnn-continuum/ddnn/funnel"
	"github.com/ddnn-continuum/ddnn/internal/auth"
	"github.com/ddnn-continuum/ddnn/internal/kafka"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/socket"
	"github.com/ddnn-continuum/ddnn/internal/wire"
)

// newRegistry makes a registry with Go and process metrics; rolled-up
// metrics carry the pipeline name.
func newRegistry(p *pipeline.Pipeline) (*prometheus.Registry, prometheus.Registerer) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg, prometheus.WrapRegistererWith(prometheus.Labels{"pipeline": p.Name}, reg)
}

// withAdmin runs a role while serving its admin routes (h) on ln: the
// admin server outlives the role, so /metrics and /readyz answer while it
// drains, and an admin server that fails stops the role.
func withAdmin(ctx context.Context, ln net.Listener, h http.Handler, role func(context.Context) error) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("admin: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		defer srv.Close()
		return role(ctx)
	})
	return g.Wait()
}

// fileFlag adds -f, the pipeline YAML, for roles that run no model.
func fileFlag(fs flagSet) *string {
	return fs.String("f", defaultPipelineFile, "pipeline YAML file")
}

type flagSet interface {
	String(name, value, usage string) *string
}

// tiersOnFlag adds --tiers-on, which moves every tier to one site.
func tiersOnFlag(fs flagSet) *string {
	return fs.String("tiers-on", "", "run as if every tier were placed on this site, the results staying on their site "+
		"(the cloud-only baseline that ddnn up --monolith runs)")
}

// placeTiers applies --tiers-on, when given, to p.
func placeTiers(p *pipeline.Pipeline, site string) error {
	if site == "" {
		return nil
	}
	if err := p.PlaceAllOn(site); err != nil {
		return fmt.Errorf("%w: --tiers-on: %v", errUsage, err)
	}
	return nil
}

// roleFlags are the flags of the roles that run without a model: -f,
// --brokers (optional), --tiers-on, --service-token-file and --log-level.
type roleFlags struct {
	file, brokers, tiersOn, serviceTokens *string
	newLogger                             func() (*slog.Logger, error)
}

func addRoleFlags(fs *flag.FlagSet, stderr io.Writer, brokers bool) roleFlags {
	rf := roleFlags{file: fileFlag(fs), brokers: new(string)}
	if brokers {
		rf.brokers = fs.String("brokers", "", "Kafka brokers, comma-separated (default: the pipeline's kafka section)")
	}
	rf.tiersOn = tiersOnFlag(fs)
	rf.serviceTokens = serviceTokenFlag(fs)
	rf.newLogger = logFlags(fs, stderr)
	return rf
}

// serviceTokenFlag adds --service-token-file, which ddnn up passes to its
// children with the token it made for them.
func serviceTokenFlag(fs flagSet) *string {
	return fs.String("service-token-file", "", "service tokens the pipeline's parts present to each other (default: the pipeline's auth.service_token_file)")
}

// applyServiceTokens makes file, when given, the pipeline's service token
// file. A relative path is the command line's, so it resolves against the
// working directory, not the YAML's.
func applyServiceTokens(p *pipeline.Pipeline, file string) error {
	if file == "" {
		return nil
	}
	abs, err := filepath.Abs(file)
	if err != nil {
		return fmt.Errorf("--service-token-file: %w", err)
	}
	p.Auth.Service, p.Auth.ServiceTokenFile = pipeline.AuthToken, abs
	return nil
}

// deviceClaims checks the device claims of the first tier's records when
// devices are authenticated (nil otherwise: a claim is then taken as is):
// signed by the funnel with service, or, with auth.devices_psk_key_file,
// by the device itself with its record key.
func deviceClaims(p *pipeline.Pipeline, service *auth.Tokens) (*auth.Claims, error) {
	if p.Auth.Devices != pipeline.AuthToken {
		return nil, nil
	}
	var d *auth.Devices
	var master []byte
	if p.Auth.DevicesPSKKeyFile != "" {
		var err error
		if d, err = auth.LoadDevices(p.Path(p.Auth.DevicesFile)); err != nil {
			return nil, err
		}
		if master, err = auth.LoadPSKKey(p.Path(p.Auth.DevicesPSKKeyFile)); err != nil {
			return nil, fmt.Errorf("auth.devices_psk_key_file: %w", err)
		}
	}
	return auth.NewClaims(service, d, master)
}

// load builds the logger (tagged with component) and reads the pipeline,
// with the tiers placed as --tiers-on says. A role runs one site of it:
// --brokers is the caller's to apply to that site (onSite).
func (rf roleFlags) load(component string) (*pipeline.Pipeline, *slog.Logger, error) {
	log, err := rf.newLogger()
	if err != nil {
		return nil, nil, err
	}
	p, err := loadPipeline(*rf.file)
	if err != nil {
		return nil, nil, err
	}
	if err := placeTiers(p, *rf.tiersOn); err != nil {
		return nil, nil, err
	}
	if err := applyServiceTokens(p, *rf.serviceTokens); err != nil {
		return nil, nil, err
	}
	return p, log.With("component", component), nil
}

// onSite makes --brokers, when given, the Kafka of site in p, and returns
// the view of that site.
func (rf roleFlags) onSite(p *pipeline.Pipeline, site string) (*pipeline.SiteView, error) {
	if *rf.brokers != "" {
		for i := range p.SiteList {
			if p.SiteList[i].Name == site {
				p.SiteList[i].Kafka.Brokers = splitList(*rf.brokers)
			}
		}
		if len(p.SiteList) <= 1 {
			overrideBrokers(p, *rf.brokers)
		}
	}
	return p.OnSite(site)
}

// siteFlag resolves --site: required on a pipeline of several sites,
// else the only site.
func siteFlag(fs *flag.FlagSet, p *pipeline.Pipeline, site string) (string, error) {
	if site != "" {
		return site, nil
	}
	sites := p.Sites()
	if len(sites) == 1 {
		return sites[0].Name, nil
	}
	names := make([]string, len(sites))
	for i := range sites {
		names[i] = sites[i].Name
	}
	fs.Usage()
	return "", fmt.Errorf("%w: --site is required: pipeline %q has %d sites (%s)", errUsage, p.Name, len(sites), strings.Join(names, ", "))
}

// siteOf is the site --site names (siteFlag).
func siteOf(fs *flag.FlagSet, p *pipeline.Pipeline, name string) (*pipeline.Site, error) {
	site, err := siteFlag(fs, p, name)
	if err != nil {
		return nil, err
	}
	s, err := p.Site(site)
	if err != nil {
		return nil, fmt.Errorf("%w: --site: %v", errUsage, err)
	}
	return s, nil
}

func runBroker(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "repair" {
		return runBrokerRepair(args[1:], stdout, stderr)
	}
	fs := newFlags("broker", "broker -f FILE [--site NAME] [--listen ADDR] [--ephemeral] [--trust-data]\n       ddnn broker repair -f FILE [--site NAME]", stderr)
	rf := addRoleFlags(fs, stderr, false)
	listen := fs.String("listen", "", "address to listen on (default: the site's kafka.embedded_listen)")
	siteName := fs.String("site", "", "the site whose broker this is, with the topics that live there (required when the pipeline has several sites)")
	ephemeral := fs.Bool("ephemeral", false, "keep everything in memory: the topics are lost when the broker stops (default: kept in the site's kafka.embedded_data_dir)")
	trustData := fs.Bool("trust-data", false, "keep the records of a data directory written by a broker that required less (TLS, SASL, ACLs) than this one; by default such a start is refused")
	if err := parse(fs, args); err != nil {
		return err
	}
	p, log, err := rf.load("broker")
	if err != nil {
		return err
	}
	s, err := siteOf(fs, p, *siteName)
	if err != nil {
		return err
	}
	var opts []kafka.BrokerOpt
	if *trustData {
		opts = append(opts, kafka.TrustData())
	}
	b, err := kafka.StartSiteBroker(p, s, *listen, *ephemeral, log, opts...)
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

// runBrokerRepair repairs the site's stopped embedded broker's data
// directory (kafka.RepairDataDir) and prints what it dropped, naming the
// messages by their ids.
func runBrokerRepair(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("broker repair", "broker repair -f FILE [--site NAME]", stderr)
	file := fileFlag(fs)
	siteName := fs.String("site", "", "the site whose broker's data directory to repair (required when the pipeline has several sites)")
	if err := parse(fs, args); err != nil {
		return err
	}
	p, err := loadPipeline(*file)
	if err != nil {
		return err
	}
	s, err := siteOf(fs, p, *siteName)
	if err != nil {
		return err
	}
	dir, err := p.SiteDataDir(s)
	if err != nil {
		return fmt.Errorf("embedded broker data dir: %w", err)
	}
	rep, err := kafka.RepairDataDir(dir)
	if rep != nil {
		rep.Write(stdout, wire.HeaderID)
	}
	return err
}

func runFunnel(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("funnel", "funnel -f FILE [--site NAME] [--listen ADDR] [--delivery-listen ADDR] [--brokers H:P,...]", stderr)
	rf := addRoleFlags(fs, stderr, true)
	listen := fs.String("listen", "", "address of the device zone: ingest and health (default: the site's funnel.listen)")
	deliveryListen := fs.String("delivery-listen", "", "address of the delivery zone: the pipeline's own routes and metrics (default: the site's funnel.delivery_listen)")
	siteName := fs.String("site", "", "the site whose funnel this is (required when the pipeline has several sites)")
	if err := parse(fs, args); err != nil {
		return err
	}
	p, log, err := rf.load("funnel")
	if err != nil {
		return err
	}
	site, err := siteFlag(fs, p, *siteName)
	if err != nil {
		return err
	}
	if _, err := rf.onSite(p, site); err != nil {
		return err
	}
	reg, wrapped := newRegistry(p)
	s, err := funnel.Start(ctx, p, funnel.Options{Site: site, Listen: *listen, DeliveryListen: *deliveryListen,
		Registerer: wrapped, Gatherer: reg, Logger: log})
	if err != nil {
		return err
	}
	s.Announce(stdout)
	return s.Run(ctx)
}

func splitList(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

func overrideBrokers(p *pipeline.Pipeline, brokers string) {
	if brokers != "" {
		p.Kafka.Brokers = strings.Split(brokers, ",")
	}
}

func runConnector(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("connector", "connector -f FILE --tier NAME (--replicas URL[,URL...] | --replicas-url URL) [--admin ADDR]", stderr)
	rf := addRoleFlags(fs, stderr, true)
	tier := fs.String("tier", "", "tier whose input topic to consume (required)")
	replicas := fs.String("replicas", "", "inference replica base URLs, comma-separated (fixed set)")
	replicasURL := fs.String("replicas-url", "", "URL serving the live replica set as JSON [{\"url\":…}] (what ddnn up serves), polled twice a second")
	cf := addConnectorFlags(fs, "a connector", "unique per connector of a tier")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *tier == "" || (*replicas == "") == (*replicasURL == "") {
		fs.Usage()
		return fmt.Errorf("%w: --tier and one of --replicas or --replicas-url are required", errUsage)
	}
	p, log, err := rf.load("connector")
	if err != nil {
		return err
	}
	// The tier's site's Kafka, unless --brokers names another.
	site := p.Sites()[0].Name
	if s := p.SiteOf(*tier); s != nil {
		site = s.Name
	}
	if _, err := rf.onSite(p, site); err != nil {
		return err
	}
	return cf.run(ctx, stdout, "connector "+*tier, connector.Config{
		Pipeline:    p,
		Tier:        *tier,
		Replicas:    splitList(*replicas),
		ReplicasURL: *replicasURL,
		Logger:      log.With("tier", *tier),
	})
}

// connectorFlags are the flags of the roles that run a connector.
type connectorFlags struct {
	admin    *string
	drain    *time.Duration
	instance *string
}

// addConnectorFlags adds --admin, --drain-timeout and --instance-id; who
// ("a connector") and unique (when an id must differ) word their help.
func addConnectorFlags(fs *flag.FlagSet, who, unique string) connectorFlags {
	return connectorFlags{
		admin: fs.String("admin", "127.0.0.1:0", "address of /metrics, /healthz and /readyz"),
		drain: fs.Duration("drain-timeout", 8*time.Second, "how long a graceful stop waits for in-flight deliveries"),
		instance: fs.String("instance-id", "", "static group membership: "+who+" restarted with the same id takes its partitions back at once "+
			"instead of after the group's 10s session timeout ("+unique+")"),
	}
}

// run builds the connector of cfg with the flags' settings and runs it,
// serving its admin routes; name says which in the announcement.
func (cf connectorFlags) run(ctx context.Context, stdout io.Writer, name string, cfg connector.Config) error {
	reg, wrapped := newRegistry(cfg.Pipeline)
	cfg.DrainTimeout, cfg.InstanceID, cfg.Registerer = *cf.drain, *cf.instance, wrapped
	var err error
	if cfg.Service, err = auth.LoadTokens(cfg.Pipeline.ServiceTokenPath()); err != nil {
		return err
	}
	if cfg.Link == nil && len(cfg.Pipeline.Tiers) > 0 && cfg.Tier == cfg.Pipeline.Tiers[0].Name {
		if cfg.Claims, err = deviceClaims(cfg.Pipeline, cfg.Service); err != nil {
			return err
		}
	}
	c, err := connector.New(cfg)
	if err != nil {
		return err
	}
	ln, err := socket.Listen(*cf.admin)
	if err != nil {
		return fmt.Errorf("%s admin: %w", name, err)
	}
	fmt.Fprintf(stdout, "%s: admin on http://%s (metrics, healthz, readyz)\n", name, ln.Addr())
	return withAdmin(ctx, ln, adminMux(reg, func() bool { return true }), c.Run)
}

func runUplink(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("uplink", "uplink -f FILE --from SITE --to SITE [--to-url URL] [--brokers H:P,...] [--admin ADDR] [--drain-timeout D] [--instance-id ID]", stderr)
	rf := addRoleFlags(fs, stderr, true)
	from := fs.String("from", "", "the sending site: its queue for --to is consumed from its Kafka (required)")
	to := fs.String("to", "", "the receiving site: its funnel (sites[].funnel.url) takes the records (required)")
	toURL := fs.String("to-url", "", "base URL of the receiving site's funnel (default: its sites[].funnel.url)")
	cf := addConnectorFlags(fs, "an uplink", "unique per uplink of a link")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *from == "" || *to == "" {
		fs.Usage()
		return fmt.Errorf("%w: --from and --to are required", errUsage)
	}
	p, log, err := rf.load("uplink")
	if err != nil {
		return err
	}
	if _, err := rf.onSite(p, *from); err != nil {
		return err
	}
	if *toURL != "" {
		for i := range p.SiteList {
			if p.SiteList[i].Name == *to {
				p.SiteList[i].Funnel.URL = strings.TrimSuffix(*toURL, "/")
			}
		}
	}
	return cf.run(ctx, stdout, "uplink "+*from+" -> "+*to, connector.Config{
		Pipeline: p,
		Link:     &pipeline.Link{From: *from, To: *to},
		Logger:   log.With("from", *from, "to", *to),
	})
}

// adminMux serves /metrics, /healthz and /readyz.
func adminMux(g prometheus.Gatherer, ready func() bool) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !ready() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ready\n")
	})
	return mux
}
