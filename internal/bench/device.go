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
	"github.com/ddnn-continuum/ddnn/internal/httpapi"
	"github.com/ddnn-continuum/ddnn/internal/kafka"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/records"
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

// Encodings a simulated device may send a sample in.
const (
	// EncodingRaw is the sample's little-endian elements (the funnel's
	// application/octet-stream, a raw Kafka value), its id and device
	// beside it in headers or query options.
	EncodingRaw = "raw"
	// EncodingJSON is the funnel's JSON ingest form over HTTP and CoAP,
	// {"id":…,"device":…,"data":[…]}, and a JSON message on Kafka.
	EncodingJSON = "json"
)

// Encodings lists them for help and errors.
var Encodings = []string{EncodingRaw, EncodingJSON}

// encoder turns a sample into what a device sends.
type encoder struct {
	json  bool
	input pipeline.Input
}

func newEncoder(encoding string, in pipeline.Input) (encoder, error) {
	switch encoding {
	case EncodingRaw, "":
		return encoder{input: in}, nil
	case EncodingJSON:
		return encoder{json: true, input: in}, nil
	}
	return encoder{}, fmt.Errorf("unknown encoding %q (want one of %v)", encoding, Encodings)
}

// message is the sample as a message of the pipeline's input.
func (e encoder) message(id, device string, sample []byte) *wire.Message {
	return &wire.Message{ID: id, Device: device, Tensor: wire.Tensor{DType: e.input.DType, Shape: e.input.Shape, Data: sample}}
}

// ingestBody is the body a device posts to the funnel.
func (e encoder) ingestBody(id, device string, sample []byte) ([]byte, error) {
	if !e.json {
		return sample, nil
	}
	return wire.AppendIngestJSON(nil, e.message(id, device, sample))
}

// device is one simulated device with its own connection. send returns nil
// once the pipeline accepted the message (the funnel answered 2xx or CoAP
// 2.01 or 2.05, or Kafka acknowledged it); any other outcome is a refusal.
// answered says the funnel's answer carried the message's result (a
// device that waits: 200, CoAP 2.05).
type device interface {
	send(ctx context.Context, id string, sample []byte) (answered bool, err error)
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

// dial opens device n's connection to site, the site of the first tier;
// an HTTP device posts to addr instead when it is set. The device
// sends its samples in encoding (EncodingRaw or EncodingJSON) and, with
// wait, asks the funnel to wait that long for each result (?wait=).
func dial(site *pipeline.SiteView, protocol, encoding, addr string, n int, wait time.Duration) (device, error) {
	p := site.Pipeline
	name := fmt.Sprintf("bench-%03d", n)
	enc, err := newEncoder(encoding, p.Input)
	if err != nil {
		return nil, err
	}
	switch protocol {
	case ProtocolHTTP:
		if addr == "" {
			addr = site.Funnel.Listen
		}
		url := "http://" + addr + httpapi.PathIngest
		if wait > 0 {
			url += "?wait=" + wait.String()
		}
		return &httpDevice{
			name: name,
			enc:  enc,
			url:  url,
			// Its own transport: its own connections, a few at most, so
			// that an overloaded pipeline makes sends queue on the device
			// (the wait counts in their round trips) rather than open
			// ever more connections.
			client: &http.Client{Timeout: sendTimeout, Transport: &http.Transport{MaxConnsPerHost: httpConnsPerDevice, MaxIdleConnsPerHost: httpConnsPerDevice}},
		}, nil
	case ProtocolCoAP:
		if site.Funnel.CoAPListen == "off" {
			return nil, fmt.Errorf("the pipeline's funnel.coap_listen is off")
		}
		// RFC 7252's NSTART of 1, go-coap's default: one request
		// outstanding per device, as constrained devices behave; sends
		// beyond that queue on the device and the wait counts.
		cc, err := udp.Dial(site.Funnel.CoAPListen, options.WithLimitClientParallelRequest(coapNStart), options.WithLimitClientEndpointParallelRequest(coapNStart))
		if err != nil {
			return nil, fmt.Errorf("coap %s: %w", site.Funnel.CoAPListen, err)
		}
		return &coapDevice{name: name, enc: enc, cc: cc, wait: wait}, nil
	case ProtocolKafka:
		if wait > 0 {
			return nil, fmt.Errorf("a device that produces to Kafka gets no answer to wait for")
		}
		cl, err := kafka.NewClient(&site.Kafka, "bench-"+name, nil, nil,
			kgo.DefaultProduceTopic(p.InputTopic(p.Tiers[0].Name)), kgo.ProducerLinger(0))
		if err != nil {
			return nil, fmt.Errorf("kafka: %w", err)
		}
		return &kafkaDevice{name: name, enc: enc, cl: cl}, nil
	}
	return nil, fmt.Errorf("unknown protocol %q (want one of %v)", protocol, Protocols)
}

type httpDevice struct {
	name   string
	enc    encoder
	url    string
	client *http.Client
}

func (d *httpDevice) send(ctx context.Context, id string, sample []byte) (bool, error) {
	body, err := d.enc.ingestBody(id, d.name, sample)
	if err != nil {
		return false, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.url, bytes.NewReader(body))
	if err != nil {
		return false, err
	}
	if d.enc.json {
		req.Header.Set("Content-Type", wire.ContentTypeJSON)
	} else {
		req.Header.Set("Content-Type", "application/octet-stream")
		req.Header.Set(funnel.HeaderMessageID, id)
		req.Header.Set(funnel.HeaderDeviceID, d.name)
	}
	resp, err := d.client.Do(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode/100 != 2 {
		return false, &refusedError{reason: fmt.Sprintf("http %d", resp.StatusCode), detail: strings.TrimSpace(string(answer))}
	}
	return resp.StatusCode == http.StatusOK, nil
}

func (d *httpDevice) close() { d.client.CloseIdleConnections() }

type coapDevice struct {
	name string
	enc  encoder
	cc   *udpclient.Conn
	wait time.Duration
}

func (d *coapDevice) send(ctx context.Context, id string, sample []byte) (bool, error) {
	body, err := d.enc.ingestBody(id, d.name, sample)
	if err != nil {
		return false, err
	}
	ctx, cancel := context.WithTimeout(ctx, sendTimeout)
	defer cancel()
	format := message.AppOctets
	var opts []message.Option
	if d.enc.json {
		format = message.AppJSON
	} else {
		opts = []message.Option{
			{ID: message.URIQuery, Value: []byte("id=" + id)},
			{ID: message.URIQuery, Value: []byte("device=" + d.name)},
		}
	}
	if d.wait > 0 {
		opts = append(opts, message.Option{ID: message.URIQuery, Value: []byte("wait=" + d.wait.String())})
	}
	resp, err := d.cc.Post(ctx, httpapi.PathIngest, format, bytes.NewReader(body), opts...)
	if err != nil {
		return false, err
	}
	switch c := resp.Code(); c {
	case codes.Created:
		return false, nil
	case codes.Content:
		return true, nil
	default:
		answer, _ := resp.ReadBody()
		return false, &refusedError{reason: fmt.Sprintf("coap %d.%02d", c>>5, c&0x1f), detail: string(answer)}
	}
}

func (d *coapDevice) close() { d.cc.Close() }

type kafkaDevice struct {
	name string
	enc  encoder
	cl   *kgo.Client
}

func (d *kafkaDevice) send(ctx context.Context, id string, sample []byte) (bool, error) {
	rec := &kgo.Record{Key: []byte(d.name), Value: sample, Headers: []kgo.RecordHeader{
		{Key: wire.HeaderID, Value: []byte(id)},
		{Key: wire.HeaderDevice, Value: []byte(d.name)},
		{Key: wire.HeaderSentAt, Value: fmt.Appendf(nil, "%d", time.Now().UnixMilli())},
	}}
	if d.enc.json {
		m := d.enc.message(id, d.name, sample)
		m.SentAt = time.Now()
		var err error
		if rec, err = records.Message(records.Destination{}, wire.JSON, m); err != nil {
			return false, err
		}
	}
	ctx, cancel := context.WithTimeout(ctx, sendTimeout)
	defer cancel()
	return false, d.cl.ProduceSync(ctx, rec).FirstErr()
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
