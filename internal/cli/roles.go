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
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/net/netutil"

	"github.com/ddnn-continuum/ddnn/connector"
	"github.com/ddnn-continuum/ddnn/funnel"
	"github.com/ddnn-continuum/ddnn/internal/kafka"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
)

// newRegistry makes a registry with Go and process metrics; rolled-up
// metrics carry the pipeline name.
func newRegistry(p *pipeline.Pipeline) (*prometheus.Registry, prometheus.Registerer) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg, prometheus.WrapRegistererWith(prometheus.Labels{"pipeline": p.Name}, reg)
}

// serveHTTP serves h on ln until ctx ends, then shuts down gracefully.
func serveHTTP(ctx context.Context, ln net.Listener, h http.Handler, grace time.Duration) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	srv.Shutdown(sctx)
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// fileFlag adds -f, the pipeline YAML, for roles that run no model.
func fileFlag(fs flagSet) *string {
	return fs.String("f", "deploy/pipeline.yaml", "pipeline YAML file")
}

type flagSet interface {
	String(name, value, usage string) *string
}

// roleFlags are the flags of the roles that run without a model: -f,
// --brokers (optional) and --log-level.
type roleFlags struct {
	file, brokers *string
	newLogger     func() (*slog.Logger, error)
}

func addRoleFlags(fs *flag.FlagSet, stderr io.Writer, brokers bool) roleFlags {
	rf := roleFlags{file: fileFlag(fs), brokers: new(string)}
	if brokers {
		rf.brokers = fs.String("brokers", "", "Kafka brokers, comma-separated (default: the pipeline's kafka section)")
	}
	rf.newLogger = logFlags(fs, stderr)
	return rf
}

// load builds the logger (tagged with component) and reads the pipeline.
func (rf roleFlags) load(component string) (*pipeline.Pipeline, *slog.Logger, error) {
	log, err := rf.newLogger()
	if err != nil {
		return nil, nil, err
	}
	p, err := pipeline.Load(*rf.file)
	if err != nil {
		return nil, nil, err
	}
	overrideBrokers(p, *rf.brokers)
	return p, log.With("component", component), nil
}

func runBroker(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("broker", "broker -f FILE [--listen ADDR] [--ephemeral]", stderr)
	rf := addRoleFlags(fs, stderr, false)
	listen := fs.String("listen", "", "address to listen on (default: the pipeline's kafka.embedded_listen)")
	ephemeral := fs.Bool("ephemeral", false, "keep everything in memory: the topics are lost when the broker stops (default: kept in kafka.embedded_data_dir)")
	if err := parse(fs, args); err != nil {
		return err
	}
	p, log, err := rf.load("broker")
	if err != nil {
		return err
	}
	addr := p.Kafka.EmbeddedListen
	if *listen != "" {
		addr = *listen
	}
	b, err := kafka.StartPipelineBroker(p, addr, *ephemeral, log)
	if err != nil {
		return err
	}
	defer b.Close()
	storage := "in memory with --ephemeral: data is lost when it stops"
	if b.DataDir() != "" {
		storage = "data kept in " + b.DataDir()
	}
	fmt.Fprintf(stdout, "embedded Kafka broker on %s (%s); topics: %s\n", b.Addr(), storage, strings.Join(p.Topics(), ", "))
	<-ctx.Done()
	return nil
}

func runFunnel(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("funnel", "funnel -f FILE [--listen ADDR] [--brokers H:P,...]", stderr)
	rf := addRoleFlags(fs, stderr, true)
	listen := fs.String("listen", "", "address to serve on (default: the pipeline's funnel.listen)")
	if err := parse(fs, args); err != nil {
		return err
	}
	p, log, err := rf.load("funnel")
	if err != nil {
		return err
	}
	reg, wrapped := newRegistry(p)
	cl, err := kgo.NewClient(append(kafka.ClientOptions(&p.Kafka, "funnel", wrapped), funnel.ProducerOptions(p)...)...)
	if err != nil {
		return fmt.Errorf("funnel: kafka client: %w", err)
	}
	defer cl.Close()
	tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err = kafka.EnsureTopics(tctx, cl, p.Kafka.Partitions, p.Topics()...)
	cancel()
	if err != nil {
		log.Warn("topics not ensured; continuing (they may exist already)", "err", err)
	}
	f := funnel.New(p, cl, funnel.NewMetrics(wrapped), log)
	addr := p.Funnel.Listen
	if *listen != "" {
		addr = *listen
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("funnel: %w", err)
	}
	ln = netutil.LimitListener(ln, p.Funnel.MaxConnections)
	mux := http.NewServeMux()
	mux.Handle("/", f.Handler())
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	// A CoAP server that fails ends the funnel (and its supervisor
	// restarts it) instead of leaving HTTP up with CoAP gone.
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	coapDone := make(chan error, 1)
	if p.Funnel.CoAPListen != "off" {
		udp, err := funnel.ListenCoAP(p.Funnel.CoAPListen)
		if err != nil {
			ln.Close()
			return err
		}
		go func() {
			err := f.ServeCoAP(ctx, udp, funnel.CoAPLimits{})
			if err != nil {
				stop()
			}
			coapDone <- err
		}()
		fmt.Fprintf(stdout, "funnel: POST coap://%s%s (devices over CoAP)\n", udp.LocalAddr(), funnel.PathIngest)
	} else {
		coapDone <- nil
	}
	fmt.Fprintf(stdout, "funnel: POST http://%s%s (devices), internal routes %s<tier>, %s\n", ln.Addr(), funnel.PathIngest, funnel.PathTiers, funnel.PathResults)
	log.Info("funnel serving", "addr", ln.Addr().String(), "brokers", p.Kafka.SeedBrokers())
	err = serveHTTP(ctx, ln, mux, 8*time.Second)
	f.Drain()
	if cerr := <-coapDone; err == nil && cerr != nil {
		err = fmt.Errorf("coap funnel: %w", cerr)
	}
	fctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	cl.Flush(fctx)
	return err
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
	admin := fs.String("admin", "127.0.0.1:0", "address of /metrics, /healthz and /readyz")
	drain := fs.Duration("drain-timeout", 8*time.Second, "how long a graceful stop waits for in-flight invocations")
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
	log = log.With("tier", *tier)
	reg, wrapped := newRegistry(p)
	c, err := connector.New(connector.Config{
		Pipeline:     p,
		Tier:         *tier,
		Replicas:     splitList(*replicas),
		ReplicasURL:  *replicasURL,
		DrainTimeout: *drain,
		Registerer:   wrapped,
		Logger:       log,
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *admin)
	if err != nil {
		return fmt.Errorf("connector admin: %w", err)
	}
	fmt.Fprintf(stdout, "connector %s: admin on http://%s (metrics, healthz, readyz)\n", *tier, ln.Addr())
	actx, stopAdmin := context.WithCancel(context.Background())
	adminDone := make(chan error, 1)
	go func() { adminDone <- serveHTTP(actx, ln, adminMux(reg, func() bool { return true }), time.Second) }()
	err = c.Run(ctx)
	stopAdmin()
	<-adminDone
	return err
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
