package funnel

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ddnn-continuum/ddnn/internal/httpapi"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/testsupport"
)

// serveYAML is testYAML with every listener on an ephemeral loopback port.
var serveYAML = strings.Replace(testYAML, "funnel: {max_request_bytes: 2048}",
	"funnel: {max_request_bytes: 2048, listen: 127.0.0.1:0, delivery_listen: 127.0.0.1:0, coap_listen: 127.0.0.1:0}", 1)

func parse(t *testing.T, y, brokers string) *pipeline.Pipeline {
	t.Helper()
	p, err := pipeline.Parse([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	p.Kafka.Brokers = []string{brokers}
	return p
}

// TestServerLifecycle: Start opens every listener and announces them, Run
// serves ingest until ctx ends, then returns cleanly with the accepted
// record in Kafka and every socket closed.
func TestServerLifecycle(t *testing.T) {
	p, _ := pipeline.Parse([]byte(serveYAML))
	c := testsupport.KafkaCluster(t, p.Kafka.Partitions, p.Topics()...)
	p = parse(t, serveYAML, c.ListenAddrs()[0])
	s, err := Start(context.Background(), p, Options{Site: p.Sites()[0].Name})
	if err != nil {
		t.Fatal(err)
	}
	var ann bytes.Buffer
	s.Announce(&ann)
	device, delivery := s.DeviceAddr().String(), s.DeliveryAddr().String()
	for _, want := range []string{"POST coap://127.0.0.1:", "POST http://" + device + httpapi.PathIngest + " (devices; no device credential)", "delivery zone http://" + delivery} {
		if !strings.Contains(ann.String(), want) {
			t.Errorf("announcement lacks %q:\n%s", want, ann.String())
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	r := &running{url: "http://" + device}
	if code, err := r.ingest("before-stop"); err != nil || code != http.StatusAccepted {
		t.Fatalf("ingest: %d %v", code, err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return")
	}
	for _, addr := range []string{device, delivery} {
		if conn, err := net.Dial("tcp", addr); err == nil {
			conn.Close()
			t.Errorf("%s still accepts after Run returned", addr)
		}
	}
	e := &env{p: p, site: onlySite(t, p), cl: testsupport.KafkaClient(t, kgo.SeedBrokers(c.ListenAddrs()[0]))}
	if recs := e.records(t, p.InputTopic("edge")); len(recs) != 1 || decodeRecord(t, recs[0]).ID != "before-stop" {
		t.Errorf("records in %s: %d, want the one accepted", p.InputTopic("edge"), len(recs))
	}
}

// TestStartRefuses: settings the funnel cannot serve fail in Start, and
// the sockets opened before the failure are closed again.
func TestStartRefuses(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	freeAddr := free.Addr().String()
	free.Close()

	tokenDevices := strings.Replace(serveYAML, "kafka:", "auth: {devices: token, devices_file: devices.yaml}\nkafka:", 1)
	for _, tc := range []struct {
		name, yaml string
		o          Options
		want       string
	}{
		{"plain CoAP with device tokens", tokenDevices, Options{}, "funnel.coap_listen 127.0.0.1:0: plain CoAP cannot carry a device's credential"},
		{"device zone beyond loopback", serveYAML, Options{Listen: "0.0.0.0:0"}, "funnel listener"},
		{"plain CoAP beyond loopback", strings.Replace(serveYAML, "coap_listen: 127.0.0.1:0", "coap_listen: 0.0.0.0:0", 1), Options{},
			"funnel.coap_listen 0.0.0.0:0 is reachable from outside this machine, and plain CoAP carries no device credential"},
		{"plain CoAP beyond loopback, client certificates for HTTPS", strings.Replace(serveYAML, "coap_listen: 127.0.0.1:0}",
			"coap_listen: 0.0.0.0:0, tls: {cert_file: c.pem, key_file: k.pem, client_ca_file: ca.pem}}", 1), Options{}, "or set auth.devices: none to let anyone send"},
		{"busy delivery address", serveYAML, Options{Listen: freeAddr, DeliveryListen: busy.Addr().String()}, "funnel: delivery: listen tcp " + busy.Addr().String()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := parse(t, tc.yaml, "127.0.0.1:1")
			tc.o.Site = p.Sites()[0].Name
			s, err := Start(context.Background(), p, tc.o)
			if err == nil {
				s.Close()
				t.Fatalf("Start succeeded, want %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Start: %v, want %q", err, tc.want)
			}
		})
	}
	// The device listener opened before the busy delivery address failed
	// was closed.
	ln, err := net.Listen("tcp", freeAddr)
	if err != nil {
		t.Errorf("the device address is still held after Start failed: %v", err)
	} else {
		ln.Close()
	}
}
