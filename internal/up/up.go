// Package up owns `ddnn up`: it runs a whole pipeline on one machine. It
// starts the embedded Kafka-protocol broker (unless real brokers are
// configured) and creates the topics, then starts the funnel, every tier's
// inference replicas and connectors as child processes of the same binary on
// 127.0.0.1, each ready only once its /readyz answers. Children that die are
// restarted; children die with the supervisor. On stop it drains in order:
// intake off, connectors finish and commit, replicas, funnel, broker.
//
// This is the one place that knows every component; the components do not
// know about it.
package up

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ddnn-continuum/ddnn/funnel"
	"github.com/ddnn-continuum/ddnn/internal/kafka"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
)

// Config is what `ddnn up` needs.
type Config struct {
	Pipeline *pipeline.Pipeline
	// File is the pipeline YAML, handed to every child.
	File string
	// ORTLib, when set, is passed to inference children.
	ORTLib string
	// Out receives the children's output, each line led by the child's name.
	Out io.Writer
	// Announce receives the lines that tell a person where to send data.
	Announce io.Writer
	Logger   *slog.Logger
	// ReadyTimeout bounds each child's start (default 60s).
	ReadyTimeout time.Duration
	// StopGrace bounds the whole stop (default 9s).
	StopGrace time.Duration
}

// Supervisor is a running pipeline.
type Supervisor struct {
	cfg        Config
	p          *pipeline.Pipeline
	log        *slog.Logger
	broker     *kafka.Broker
	brokers    string
	funnel     *child
	replicas   map[string][]*child // by tier
	connectors []*child
	ready      sync.WaitGroup
}

// Run starts the pipeline and blocks until ctx ends, then stops it. A start
// failure stops what was started and is returned.
func Run(ctx context.Context, cfg Config) error {
	if cfg.ReadyTimeout == 0 {
		cfg.ReadyTimeout = 60 * time.Second
	}
	if cfg.StopGrace == 0 {
		cfg.StopGrace = 9 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Supervisor{cfg: cfg, p: cfg.Pipeline, log: cfg.Logger.With("component", "up"), replicas: map[string][]*child{}}
	childCtx, stopSupervising := context.WithCancel(context.Background())
	defer stopSupervising()
	err := s.start(ctx, childCtx)
	if err == nil {
		s.announce()
		err = s.serveAdmin(ctx)
	}
	stopSupervising()
	s.stop()
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}

func (s *Supervisor) start(ctx, childCtx context.Context) error {
	p := s.p
	if p.Kafka.Embedded() {
		b, err := kafka.StartBroker(p.Kafka.EmbeddedListen, p.Kafka.Partitions, p.Topics(), s.log)
		if err != nil {
			return err
		}
		s.broker = b
		s.brokers = b.Addr()
	} else {
		s.brokers = strings.Join(p.Kafka.Brokers, ",")
		if err := s.ensureTopics(ctx); err != nil {
			return err
		}
	}
	funnelAddr := p.Funnel.Listen
	s.funnel = s.newChild("funnel", "http://"+funnelAddr+"/readyz",
		"funnel", "-f", s.cfg.File, "--brokers", s.brokers, "--listen", funnelAddr)
	if err := s.launch(ctx, childCtx, s.funnel); err != nil {
		return err
	}
	var group []*child
	for _, t := range p.Tiers {
		var urls []string
		for r := 0; r < t.Replicas; r++ {
			port, err := freePort()
			if err != nil {
				return err
			}
			addr := "127.0.0.1:" + strconv.Itoa(port)
			args := []string{"inference", "-f", s.cfg.File, "--tier", t.Name, "--listen", addr, "--funnel", "http://" + funnelAddr}
			if s.cfg.ORTLib != "" {
				args = append(args, "--ort-lib", s.cfg.ORTLib)
			}
			c := s.newChild(fmt.Sprintf("%s-%d", t.Name, r), "http://"+addr+"/readyz", args...)
			s.replicas[t.Name] = append(s.replicas[t.Name], c)
			group = append(group, c)
			urls = append(urls, "http://"+addr)
		}
		port, err := freePort()
		if err != nil {
			return err
		}
		admin := "127.0.0.1:" + strconv.Itoa(port)
		c := s.newChild("connector-"+t.Name, "http://"+admin+"/readyz",
			"connector", "-f", s.cfg.File, "--tier", t.Name, "--replicas", strings.Join(urls, ","),
			"--admin", admin, "--brokers", s.brokers, "--drain-timeout", "5s")
		s.connectors = append(s.connectors, c)
	}
	// Replicas first (they load models), then the connectors that call them.
	if err := s.launch(ctx, childCtx, group...); err != nil {
		return err
	}
	return s.launch(ctx, childCtx, s.connectors...)
}

func (s *Supervisor) ensureTopics(ctx context.Context) error {
	cl, err := kgo.NewClient(kafka.ClientOptions(&s.p.Kafka, "up", nil)...)
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	tctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	return kafka.EnsureTopics(tctx, cl, s.p.Kafka.Partitions, s.p.Topics()...)
}

func (s *Supervisor) newChild(name, readyURL string, args ...string) *child {
	return &child{name: name, args: append(args, "--log-level", "info"), readyURL: readyURL, log: s.log, out: s.cfg.Out}
}

// launch starts children together and waits until all are ready.
func (s *Supervisor) launch(ctx, childCtx context.Context, cs ...*child) error {
	for _, c := range cs {
		if err := c.start(); err != nil {
			return err
		}
		go c.supervise(childCtx)
	}
	errc := make(chan error, len(cs))
	for _, c := range cs {
		go func() { errc <- c.waitReady(ctx, s.cfg.ReadyTimeout) }()
	}
	var errs []error
	for range cs {
		if err := <-errc; err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return nil
}

func (s *Supervisor) announce() {
	w := s.cfg.Announce
	if w == nil {
		return
	}
	p := s.p
	fmt.Fprintf(w, "pipeline %q is up: %d tiers, %d processes\n", p.Name, len(p.Tiers), len(s.children()))
	if s.broker != nil {
		fmt.Fprintf(w, "  kafka:    %s (embedded, in memory: data is lost when ddnn up stops)\n", s.brokers)
	} else {
		fmt.Fprintf(w, "  kafka:    %s\n", s.brokers)
	}
	fmt.Fprintf(w, "  send:     POST http://%s%s  (raw %s %v bytes or JSON {\"data\":[…]})\n", p.Funnel.Listen, funnel.PathIngest, p.Input.DType, p.Input.Shape)
	fmt.Fprintf(w, "  or:       produce to topic %s\n", p.InputTopic(p.Tiers[0].Name))
	fmt.Fprintf(w, "  results:  topic %s  (ddnn results -f %s --follow)\n", p.ResultsTopic(), s.cfg.File)
	fmt.Fprintf(w, "  metrics:  http://%s/metrics\n", p.Admin.Listen)
}

func (s *Supervisor) children() []*child {
	cs := []*child{s.funnel}
	for _, t := range s.p.Tiers {
		cs = append(cs, s.replicas[t.Name]...)
	}
	return append(cs, s.connectors...)
}

// serveAdmin serves /metrics (the supervisor's and every child's, labeled
// by process), /healthz and /readyz until ctx ends.
func (s *Supervisor) serveAdmin(ctx context.Context) error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	restarts := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "ddnn_up_child_restarts", Help: "Restarts of ddnn up's child processes since start.",
	}, func() float64 {
		n := 0
		for _, c := range s.children() {
			c.mu.Lock()
			n += c.restarts
			c.mu.Unlock()
		}
		return float64(n)
	})
	reg.MustRegister(restarts)
	gs := prometheus.Gatherers{reg}
	for _, c := range s.children() {
		gs = append(gs, childGatherer{c})
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(gs, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		for _, c := range s.children() {
			if !c.ready() {
				http.Error(w, c.name+" not ready", http.StatusServiceUnavailable)
				return
			}
		}
		io.WriteString(w, "ready\n")
	})
	ln, err := net.Listen("tcp", s.p.Admin.Listen)
	if err != nil {
		return fmt.Errorf("admin: %w", err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	srv.Shutdown(sctx)
	return nil
}

// stop drains in order within StopGrace: intake off, connectors (finish
// in-flight, commit, leave), replicas, funnel (flush), broker.
func (s *Supervisor) stop() {
	deadline := time.Now().Add(s.cfg.StopGrace)
	share := func(frac float64) time.Duration {
		left := time.Until(deadline)
		return max(time.Duration(float64(left)*frac), 100*time.Millisecond)
	}
	if s.funnel != nil {
		client := &http.Client{Timeout: 500 * time.Millisecond}
		if resp, err := client.Post("http://"+s.p.Funnel.Listen+funnel.PathDrain, "text/plain", nil); err == nil {
			resp.Body.Close()
		}
	}
	stopAll(s.connectors, share(0.7))
	var reps []*child
	for _, t := range s.p.Tiers {
		reps = append(reps, s.replicas[t.Name]...)
	}
	stopAll(reps, share(0.5))
	if s.funnel != nil {
		s.funnel.stop(share(0.8))
	}
	if s.broker != nil {
		s.broker.Close()
	}
	s.log.Info("pipeline stopped")
}

func stopAll(cs []*child, grace time.Duration) {
	var wg sync.WaitGroup
	for _, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.stop(grace)
		}()
	}
	wg.Wait()
}

// freePort asks the kernel for a free loopback port.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// childGatherer reads a child's /metrics and labels every series with the
// child's name.
type childGatherer struct{ c *child }

func (g childGatherer) Gather() ([]*dto.MetricFamily, error) {
	url := strings.TrimSuffix(g.c.readyURL, "/readyz") + "/metrics"
	client := &http.Client{Timeout: 2 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return nil, fmt.Errorf("%s metrics: %w", g.c.name, err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%s metrics: %w", g.c.name, err)
	}
	name, label := "process", g.c.name
	out := make([]*dto.MetricFamily, 0, len(fams))
	for _, f := range fams {
		// Runtime metrics of every child would collide with the
		// supervisor's own; keep ddnn's.
		if !strings.HasPrefix(f.GetName(), "ddnn_") {
			continue
		}
		for _, m := range f.Metric {
			m.Label = append(m.Label, &dto.LabelPair{Name: &name, Value: &label})
		}
		out = append(out, f)
	}
	return out, nil
}
