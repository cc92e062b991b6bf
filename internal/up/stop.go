package up

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"golang.org/x/sync/errgroup"

	"github.com/ddnn-continuum/ddnn/internal/httpapi"
	"github.com/ddnn-continuum/ddnn/internal/proc"
	"github.com/ddnn-continuum/ddnn/scaler"
)

// stop drains in order within StopGrace: intake off (not for a restart:
// see RestartSignal), connectors (finish in-flight, commit, leave) or the
// monolith (finishes its poll, commits), replicas, uplinks (ship what is
// queued for other sites), funnel (flush) once the uplinks of every site
// run together are down; then it reports what is left unprocessed, stops
// the admin server and the broker. Each step stops what it owns in
// parallel and starts when the one before is done.
func (s *Supervisor) stop() {
	began := time.Now()
	deadline := began.Add(s.cfg.StopGrace)
	share := func(frac float64) time.Duration {
		return max(time.Duration(float64(time.Until(deadline))*frac), 100*time.Millisecond)
	}
	if s.stopScaler != nil {
		s.stopScaler()
	}
	s.mu.Lock()
	funnelChild := s.funnel
	connectors := append([]*proc.Child(nil), s.connectors...)
	if s.monolith != nil {
		connectors = append(connectors, s.monolith)
	}
	uplinks := append([]*proc.Child(nil), s.uplinks...)
	replicas := scaler.Tiers{Runtimes: maps.Clone(s.runtimes)}
	s.mu.Unlock()
	var adm *kadm.Client
	if s.brokers != "" {
		if cl, err := s.kafkaClient("up", nil); err != nil {
			s.log.Warn("unprocessed messages unknown", "err", err)
		} else {
			defer cl.Close()
			adm = kadm.NewClient(cl)
		}
	}
	// A restart keeps the funnel taking device data until it stops: the
	// sends it cannot take then wait in its sockets' backlogs (held
	// across the restart) instead of being answered 503.
	if funnelChild != nil && !s.cfg.handover.restartingNow() {
		client, err := s.serviceClient(500 * time.Millisecond)
		if err == nil {
			var resp *http.Response
			if resp, err = client.Post("http://"+s.site.Funnel.DeliveryListen+httpapi.PathDrain, "text/plain", nil); err == nil {
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					err = fmt.Errorf("funnel answered %s", resp.Status)
				}
			}
		}
		if err != nil {
			s.log.Warn("funnel not drained: devices may send until it stops", "err", err)
		}
	}
	if adm != nil && s.started.Load() {
		s.awaitBacklog(adm, share(0.3))
	}
	stopChildren(connectors, share(0.8))
	if err := errors.Join(replicas.Close(context.Background()), s.closeCanaries(context.Background())); err != nil {
		s.log.Warn("stopping replicas", "err", err)
	}
	// The uplinks ship what the last deliveries queued for other sites.
	if len(uplinks) > 0 {
		if adm != nil && s.started.Load() {
			s.awaitBacklog(adm, share(0.3))
		}
		stopChildren(uplinks, share(0.8))
	}
	if s.uplinksStopped != nil {
		s.uplinksStopped.Done()
		s.awaitUplinks(share(0.5))
	}
	if funnelChild != nil {
		stopChildren([]*proc.Child{funnelChild}, share(0.8))
	}
	if adm != nil {
		ctx, cancel := context.WithTimeout(context.Background(), max(time.Until(deadline), time.Second))
		s.reportBacklog(ctx, adm, "")
		cancel()
	}
	if s.admin != nil {
		s.admin.Close()
	}
	if s.broker != nil {
		s.broker.Close()
	}
	msg := "pipeline stopped"
	if s.severalSites() {
		msg = "site stopped"
	}
	s.log.Info(msg, "took", time.Since(began).Round(time.Millisecond))
}

// awaitUplinks waits up to budget for the uplinks of every site run
// together to stop.
func (s *Supervisor) awaitUplinks(budget time.Duration) {
	done := make(chan struct{})
	go func() {
		s.uplinksStopped.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(budget):
		s.log.Info("stopping the funnel before other sites' uplinks stopped", "waited", budget.Round(time.Millisecond))
	}
}

// stopChildren stops children in parallel, each within grace.
func stopChildren(cs []*proc.Child, grace time.Duration) {
	var g errgroup.Group
	for _, c := range cs {
		g.Go(func() error {
			c.Stop(grace)
			return nil
		})
	}
	g.Wait()
}
