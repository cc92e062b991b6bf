package up

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"

	"github.com/ddnn-continuum/ddnn/connector"
	"github.com/ddnn-continuum/ddnn/funnel"
	"github.com/ddnn-continuum/ddnn/internal/auth"
	"github.com/ddnn-continuum/ddnn/internal/command"
	"github.com/ddnn-continuum/ddnn/internal/httpapi"
	"github.com/ddnn-continuum/ddnn/internal/kafka"
	"github.com/ddnn-continuum/ddnn/internal/monolith"
	"github.com/ddnn-continuum/ddnn/internal/proc"
	"github.com/ddnn-continuum/ddnn/internal/runtime"
	"github.com/ddnn-continuum/ddnn/internal/runtime/replicas"
	"github.com/ddnn-continuum/ddnn/internal/socket"
	"github.com/ddnn-continuum/ddnn/scaler"
)

func (s *Supervisor) start(ctx context.Context) error {
	p, k := s.p, &s.site.Kafka
	if k.Embedded() {
		b, err := s.startBroker()
		if err != nil {
			return err
		}
		s.broker, s.brokers, s.dataDir = b, b.Addr(), b.DataDir()
	} else {
		s.brokers = strings.Join(k.Brokers, ",")
		if err := s.ensureTopics(ctx); err != nil {
			return err
		}
	}
	if s.dataDir != "" || !k.Embedded() {
		cl, err := s.kafkaClient("up", nil)
		if err != nil {
			return err
		}
		s.reportBacklog(ctx, kadm.NewClient(cl), "left from the last run; processing them now")
		cl.Close()
	}
	if err := s.holdAdmin(); err != nil {
		return err
	}
	if err := s.serveAdmin(); err != nil {
		return err
	}
	// The funnel's readiness is asked on the delivery zone (the device
	// zone may be HTTPS).
	delivery := "http://" + s.site.Funnel.DeliveryListen
	site := ""
	if s.severalSites() {
		site = s.site.Name
	}
	fc := s.newChild(s.childName("funnel"), delivery+"/readyz", "funnel", command.Args(funnel.Command{
		Role: s.role(), Site: site, Listen: s.site.Funnel.Listen, DeliveryListen: s.site.Funnel.DeliveryListen}))
	if err := s.passFunnelSockets(fc); err != nil {
		fc.Stop(0) // closes what it was passed
		return err
	}
	s.mu.Lock()
	s.funnel = fc
	s.mu.Unlock()
	if err := s.launch(ctx, s.funnel); err != nil {
		return err
	}
	if s.cfg.Monolith {
		return s.startMonolith(ctx)
	}
	// Replicas first (they load models), then the connectors that call
	// them; the connectors follow each tier's live replica set and write
	// what the replicas decide.
	tiers, err := scaler.StartTiers(ctx, p, s.site.Name, s.replicaOptions())
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.runtimes = tiers.Runtimes
	s.mu.Unlock()
	for _, t := range s.tiers {
		if err := s.waitReplicas(ctx, t.Name, t.Replicas.Min); err != nil {
			return err
		}
	}
	if err := s.applyCanaries(ctx, p); err != nil {
		return err
	}
	for _, t := range s.tiers {
		c, err := s.newServingChild(s.childName("connector-"+t.Name), "connector", func(admin string) []string {
			return command.Args(connector.Command{
				Role: s.role(), Tier: t.Name, ReplicasURL: "http://" + s.site.Admin.Listen + httpapi.ReplicasPath(t.Name),
				// One connector per tier: a restarted one rejoins at once.
				// It drains within a third of the stop's grace, which
				// gives the connectors about half of it (stop).
				Serving: connector.Serving{Admin: admin, DrainTimeout: s.cfg.StopGrace / 3, InstanceID: "up-" + t.Name},
			})
		})
		if err != nil {
			return err
		}
		s.mu.Lock()
		s.connectors = append(s.connectors, c)
		s.mu.Unlock()
	}
	if err := s.addUplinks(); err != nil {
		return err
	}
	s.mu.Lock()
	cs := append(append([]*proc.Child(nil), s.connectors...), s.uplinks...)
	s.mu.Unlock()
	if err := s.launch(ctx, cs...); err != nil {
		return err
	}
	return s.startScaler(ctx, tiers.Targets)
}

// addUplinks makes one uplink per link leaving the site, which ships its
// queue to the remote site's funnel (or to the link's URL in
// Config.LinkURLs).
func (s *Supervisor) addUplinks() error {
	for _, l := range s.links {
		c, err := s.newServingChild(s.childName("uplink-"+l.To), "uplink", func(admin string) []string {
			return command.Args(connector.UplinkCommand{
				Role: s.role(), From: l.From, To: l.To, ToURL: s.cfg.LinkURLs[l],
				// One uplink per link: a restarted one rejoins at once.
				Serving: connector.Serving{Admin: admin, InstanceID: "up-uplink-" + l.To},
			})
		})
		if err != nil {
			return err
		}
		s.mu.Lock()
		s.uplinks = append(s.uplinks, c)
		s.mu.Unlock()
	}
	return nil
}

// startMonolith starts, after the funnel, the parts of a site of the
// monolith baseline: the monolith, when the tiers are on the site, and
// the uplinks.
func (s *Supervisor) startMonolith(ctx context.Context) error {
	if len(s.tiers) > 0 {
		c, err := s.newServingChild(s.childName("monolith"), "monolith", func(admin string) []string {
			return command.Args(monolith.Command{Role: s.role(), Site: s.site.Name, ORTLib: s.cfg.ORTLib, Admin: admin})
		})
		if err != nil {
			return err
		}
		s.mu.Lock()
		s.monolith = c
		s.mu.Unlock()
	}
	if err := s.addUplinks(); err != nil {
		return err
	}
	s.mu.Lock()
	cs := append([]*proc.Child(nil), s.uplinks...)
	if s.monolith != nil {
		cs = append(cs, s.monolith)
	}
	s.mu.Unlock()
	return s.launch(ctx, cs...)
}

// startBroker starts the site's embedded broker with the topics that live
// on the site, on disk in its SiteDataDir unless ephemeral.
func (s *Supervisor) startBroker() (*kafka.Broker, error) {
	opts := []kafka.BrokerOpt{kafka.BrokerMetrics(s.reg)}
	if s.cfg.TrustData {
		opts = append(opts, kafka.TrustData())
	}
	return kafka.StartSiteBroker(s.p, &s.site.Site, "", s.cfg.Ephemeral, s.log, opts...)
}

// replicaOptions are what the site's replicas are started with.
func (s *Supervisor) replicaOptions() replicas.Options {
	return replicas.Options{
		File: s.cfg.File, ServiceTokenFile: s.cfg.ServiceTokenFile, LogLevel: s.cfg.LogLevel,
		ORTLib: s.cfg.ORTLib, Out: s.cfg.Out, Logger: s.log,
	}
}

// waitReplicas waits until n replicas of tier are ready.
func (s *Supervisor) waitReplicas(ctx context.Context, tier string, n int) error {
	return s.waitRuntime(ctx, s.runtime(tier), fmt.Sprintf("tier %q", tier), n)
}

// waitRuntime waits until n replicas of rt, which what names, are ready.
func (s *Supervisor) waitRuntime(ctx context.Context, rt runtime.Runtime, what string, n int) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ReadyTimeout)
	defer cancel()
	for {
		reps, _ := rt.List(ctx)
		ready := 0
		for _, r := range reps {
			if r.Ready {
				ready++
			}
		}
		if ready >= n {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %d of %d replicas ready within %s", what, ready, n, s.cfg.ReadyTimeout)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// startScaler runs the scaler for targets (scaler.StartTiers), the tiers
// whose replicas may change.
func (s *Supervisor) startScaler(ctx context.Context, targets []scaler.Target) error {
	if len(targets) == 0 {
		return nil
	}
	cl, err := s.kafkaClient("scaler", s.kafkaReg)
	if err != nil {
		return err
	}
	sc, err := scaler.New(scaler.Config{Admin: kadm.NewClient(cl), Targets: targets, Registerer: s.reg, Logger: s.cfg.Logger})
	if err != nil {
		cl.Close()
		return err
	}
	s.mu.Lock()
	s.scaler = sc
	s.mu.Unlock()
	run, cancel := context.WithCancel(s.supervise)
	var g errgroup.Group
	g.Go(func() error {
		defer cl.Close()
		return sc.Run(run)
	})
	s.stopScaler = func() {
		cancel()
		g.Wait()
	}
	s.bg.Go(g.Wait) // its error, if any, stops the pipeline
	// Ready, as the children are, once it can decide: it read every
	// scaled tier's lag.
	ctx, stop := context.WithTimeout(ctx, s.cfg.ReadyTimeout)
	defer stop()
	for !sc.Ready() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("scaler: the lag of tiers %s not read within %s", targetNames(targets), s.cfg.ReadyTimeout)
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

// targetNames are the tiers of targets, comma-separated.
func targetNames(targets []scaler.Target) string {
	names := make([]string, len(targets))
	for i, t := range targets {
		names[i] = t.Tier
	}
	return strings.Join(names, ", ")
}

// kafkaClient is a client of the site's brokers, embedded or not.
func (s *Supervisor) kafkaClient(role string, reg prometheus.Registerer) (*kgo.Client, error) {
	k := s.site.Kafka
	k.Brokers = strings.Split(s.brokers, ",")
	cl, err := kafka.NewClient(&k, role, reg, s.log)
	if err != nil {
		return nil, fmt.Errorf("%s: kafka client: %w", role, err)
	}
	return cl, nil
}

func (s *Supervisor) ensureTopics(ctx context.Context) error {
	cl, err := kafka.NewClient(&s.site.Kafka, "up", nil, s.log)
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	tctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	return kafka.EnsureTopics(tctx, cl, &s.site.Kafka, s.p.TopicsOn(s.site.Name)...)
}

// newChild makes a child of the same binary that runs command with
// flags (command.Args of the command's options).
func (s *Supervisor) newChild(name, readyURL, command string, flags []string) *proc.Child {
	return proc.New(name, readyURL, s.cfg.Out, s.log, append([]string{command}, flags...)...)
}

// passFunnelSockets binds the funnel's HTTP sockets and its CoAP socket
// and passes them to fc: a taken port fails the start at once, and a
// restarted funnel keeps its ports, with the requests made meanwhile
// waiting in their backlog (or, for CoAP, the socket's receive buffer).
// ddnn up holds them for its life, so that they also outlive a stop and
// an in-place restart (RestartSignal), and fc gets a copy. Nothing is
// bound beyond what the pipeline's auth allows (funnel.CheckListeners;
// the funnel checks it too, as it may run on its own). The CoAPS socket
// stays the funnel's: its DTLS sessions would not survive the funnel
// anyway.
func (s *Supervisor) passFunnelSockets(fc *proc.Child) error {
	fu := s.site.Funnel
	if err := funnel.CheckListeners(&s.site, fu.Listen, fu.DeliveryListen); err != nil {
		return err
	}
	type listener struct {
		key, addr string
		hold      func(string) (*socket.Socket, error)
	}
	ls := []listener{{"funnel.listen", fu.Listen, s.cfg.handover.hold}, {"funnel.delivery_listen", fu.DeliveryListen, s.cfg.handover.hold}}
	if fu.CoAPListen != "off" {
		ls = append(ls, listener{"funnel.coap_listen", fu.CoAPListen, s.cfg.handover.holdPacket})
	}
	for _, l := range ls {
		held, err := l.hold(l.addr)
		if err != nil {
			return fmt.Errorf("%s: %w", l.key, err)
		}
		sock, err := held.Dup()
		if err != nil {
			return fmt.Errorf("%s: %w", l.key, err)
		}
		fc.Pass(sock)
	}
	return nil
}

// newServingChild makes a child whose admin server listens on a socket
// bound here and passed down (see socket.Socket); flags gets its address.
func (s *Supervisor) newServingChild(name, command string, flags func(admin string) []string) (*proc.Child, error) {
	admin, err := socket.New()
	if err != nil {
		return nil, fmt.Errorf("%s admin: %w", name, err)
	}
	c := s.newChild(name, "http://"+admin.Addr+"/readyz", command, flags(admin.Addr))
	c.Pass(admin)
	return c, nil
}

// role are the flags every child gets: the pipeline file, the site's
// brokers, the placement (--tiers-on with Config.Monolith), the service
// token file and the log level.
func (s *Supervisor) role() command.Role {
	r := command.Role{File: s.cfg.File, Brokers: s.brokers, ServiceTokenFile: s.cfg.ServiceTokenFile,
		Log: command.Log{Level: cmp.Or(s.cfg.LogLevel, "info")}}
	if s.cfg.Monolith {
		r.TiersOn = s.placement
	}
	return r
}

// serviceClient is an HTTP client presenting the service token.
func (s *Supervisor) serviceClient(timeout time.Duration) (*http.Client, error) {
	tokens, err := auth.LoadTokens(s.cfg.ServiceTokenFile)
	if err != nil {
		return nil, err
	}
	return &http.Client{Timeout: timeout, Transport: tokens.Transport(nil)}, nil
}

// launch starts children together, supervises them in bg and waits until
// all are ready.
func (s *Supervisor) launch(ctx context.Context, cs ...*proc.Child) error {
	for _, c := range cs {
		if err := c.Start(); err != nil {
			return err
		}
		s.bg.Go(func() error {
			c.Supervise(s.supervise)
			return nil
		})
	}
	var g errgroup.Group
	for _, c := range cs {
		g.Go(func() error { return c.WaitReady(ctx, s.cfg.ReadyTimeout) })
	}
	if err := g.Wait(); err != nil {
		return err
	}
	return ctx.Err()
}
