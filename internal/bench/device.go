package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/options"
	"github.com/plgd-dev/go-coap/v3/udp"
	udpclient "github.com/plgd-dev/go-coap/v3/udp/client"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ddnn-continuum/ddnn/funnel"
	"github.com/ddnn-continuum/ddnn/internal/kafka"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/wire"
)

// Protocols a simulated device may speak.
const (
	ProtocolHTTP  = "http"
	ProtocolCoAP  = "coap"
	ProtocolKafka = "kafka"
)

// Protocols lists them for help and errors.
var Protocols = []string{ProtocolHTTP, ProtocolCoAP, ProtocolKafka}

// device is one simulated device with its own connection. send returns nil
// once the pipeline accepted the message (the funnel answered 2xx or CoAP
// 2.01, or Kafka acknowledged it); any other outcome is a refusal.
type device interface {
	send(ctx context.Context, id string, sample []byte) error
	close()
}

// sendTimeout bounds one send.
const sendTimeout = 10 * time.Second

// coapNStart is how many CoAP requests a device has outstanding.
const coapNStart = 1

// httpConnsPerDevice bounds an HTTP device's connections: HTTP/1.1 sends
// one request per connection at a time, so an open-loop device sending
// faster than the round trip needs a few.
const httpConnsPerDevice = 8

// dial opens device n's connection to p, as the site of its first tier
// runs it; an HTTP device posts to addr instead when it is set.
func dial(p *pipeline.Pipeline, protocol, addr string, n int) (device, error) {
	name := fmt.Sprintf("bench-%03d", n)
	switch protocol {
	case ProtocolHTTP:
		if addr == "" {
			addr = p.Funnel.Listen
		}
		return &httpDevice{
			name: name,
			url:  "http://" + addr + funnel.PathIngest,
			// Its own transport: its own connections, a few at most, so
			// that an overloaded pipeline makes sends queue on the device
			// (the wait counts in their round trips) rather than open
			// ever more connections.
			client: &http.Client{Timeout: sendTimeout, Transport: &http.Transport{MaxConnsPerHost: httpConnsPerDevice, MaxIdleConnsPerHost: httpConnsPerDevice}},
		}, nil
	case ProtocolCoAP:
		if p.Funnel.CoAPListen == "off" {
			return nil, fmt.Errorf("the pipeline's funnel.coap_listen is off")
		}
		// RFC 7252's NSTART of 1, go-coap's default: one request
		// outstanding per device, as constrained devices behave; sends
		// beyond that queue on the device and the wait counts.
		cc, err := udp.Dial(p.Funnel.CoAPListen, options.WithLimitClientParallelRequest(coapNStart), options.WithLimitClientEndpointParallelRequest(coapNStart))
		if err != nil {
			return nil, fmt.Errorf("coap %s: %w", p.Funnel.CoAPListen, err)
		}
		return &coapDevice{name: name, cc: cc}, nil
	case ProtocolKafka:
		cl, err := kafka.NewClient(&p.Kafka, "bench-"+name, nil, nil,
			kgo.DefaultProduceTopic(p.InputTopic(p.Tiers[0].Name)), kgo.ProducerLinger(0))
		if err != nil {
			return nil, fmt.Errorf("kafka: %w", err)
		}
		return &kafkaDevice{name: name, cl: cl}, nil
	}
	return nil, fmt.Errorf("unknown protocol %q (want one of %v)", protocol, Protocols)
}

type httpDevice struct {
	name   string
	url    string
	client *http.Client
}

func (d *httpDevice) send(ctx context.Context, id string, sample []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.url, bytes.NewReader(sample))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set(funnel.HeaderMessageID, id)
	req.Header.Set(funnel.HeaderDeviceID, d.name)
	resp, err := d.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode/100 != 2 {
		return &refusedError{reason: fmt.Sprintf("http %d", resp.StatusCode), detail: strings.TrimSpace(string(body))}
	}
	return nil
}

func (d *httpDevice) close() { d.client.CloseIdleConnections() }

type coapDevice struct {
	name string
	cc   *udpclient.Conn
}

func (d *coapDevice) send(ctx context.Context, id string, sample []byte) error {
	ctx, cancel := context.WithTimeout(ctx, sendTimeout)
	defer cancel()
	resp, err := d.cc.Post(ctx, funnel.PathIngest, message.AppOctets, bytes.NewReader(sample),
		message.Option{ID: message.URIQuery, Value: []byte("id=" + id)},
		message.Option{ID: message.URIQuery, Value: []byte("device=" + d.name)})
	if err != nil {
		return err
	}
	if c := resp.Code(); c != codes.Created {
		body, _ := resp.ReadBody()
		return &refusedError{reason: fmt.Sprintf("coap %d.%02d", c>>5, c&0x1f), detail: string(body)}
	}
	return nil
}

func (d *coapDevice) close() { d.cc.Close() }

type kafkaDevice struct {
	name string
	cl   *kgo.Client
}

func (d *kafkaDevice) send(ctx context.Context, id string, sample []byte) error {
	rec := &kgo.Record{Key: []byte(d.name), Value: sample, Headers: []kgo.RecordHeader{
		{Key: wire.HeaderID, Value: []byte(id)},
		{Key: wire.HeaderDevice, Value: []byte(d.name)},
		{Key: wire.HeaderSentAt, Value: fmt.Appendf(nil, "%d", time.Now().UnixMilli())},
	}}
	ctx, cancel := context.WithTimeout(ctx, sendTimeout)
	defer cancel()
	return d.cl.ProduceSync(ctx, rec).FirstErr()
}

func (d *kafkaDevice) close() { d.cl.Close() }

// refusedError is a send the funnel answered with something else than an
// acceptance; reason is the protocol and code ("http 503", "coap 5.03").
type refusedError struct{ reason, detail string }

func (e *refusedError) Error() string {
	if e.detail == "" {
		return e.reason
	}
	return e.reason + ": " + e.detail
}

// refusal names why a send was not accepted, from a small set of reasons:
// the funnel's code, "kafka <error>", "timeout", "connection refused",
// "connection reset", "interrupted" (the bench stopped first) or "error".
func refusal(err error) string {
	var re *refusedError
	var ke *kerr.Error
	var ne net.Error
	switch {
	case errors.As(err, &re):
		return re.reason
	case errors.Is(err, context.Canceled):
		return "interrupted"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, kgo.ErrRecordTimeout), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.As(err, &ke):
		return "kafka " + ke.Message
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection reset"
	}
	return "error"
}
