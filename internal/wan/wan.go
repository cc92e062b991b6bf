// Package wan emulates the wide-area links between sites on one machine:
// latency, jitter and bandwidth per direction, scheduled outages, and the
// bytes that crossed each link.
//
// A network file (Parse, Load) lists directed links ("edge->fog": the client
// is on the edge, the server on the fog) and cuts. Start puts one TCP proxy
// per link in front of the address the caller gives, on 127.0.0.1, with an
// embedded Toxiproxy server controlled in-process (no API port): the kernel
// here has no netem, and Toxiproxy shapes streams in user space. Run applies
// the cuts on a clock the caller starts; Stats reads the byte counters; Stop
// closes every proxy and waits for their connections to drain.
//
// The package knows nothing about pipelines, sites, Kafka or HTTP: which
// link carries what is the caller's business. It never listens on, or
// forwards to, anything but a loopback address.
package wan

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/Shopify/toxiproxy/v2"
	"github.com/Shopify/toxiproxy/v2/stream"
	"github.com/Shopify/toxiproxy/v2/toxics"
	"github.com/rs/zerolog"
)

// Toxic types this package adds to Toxiproxy's registry.
const (
	gateType  = "ddnn_wan_gate"
	stampType = "ddnn_wan_stamp"
	meterType = "ddnn_wan_meter"
)

func init() {
	toxics.Register(gateType, new(gateToxic))
	toxics.Register(stampType, new(stampToxic))
	toxics.Register(meterType, new(meterToxic))
}

// Option configures Start.
type Option func(*Network)

// WithLogger logs cuts and heals (never per connection); nil discards.
func WithLogger(l *slog.Logger) Option {
	return func(n *Network) {
		if l != nil {
			n.log = l
		}
	}
}

// Network is a set of running emulated links.
type Network struct {
	spec     *Spec
	log      *slog.Logger
	server   *toxiproxy.ApiServer
	links    []*link // started links, in file order
	byName   map[string]*link
	stopping chan struct{}
	stopOnce sync.Once
	// running counts the link directions of open connections whose bytes
	// are still inside the proxy; Stop waits for it.
	running sync.WaitGroup
}

type link struct {
	Link
	net   *Network
	proxy *toxiproxy.Proxy
	addr  string
	mu    sync.Mutex
	up    chan struct{} // closed while the link is up
	bytes [stream.NumDirections]atomic.Int64
}

// LinkStats is what crossed one link since Start.
type LinkStats struct {
	From, To string
	// BytesUp went From→To (client to server), BytesDown To→From. Bytes
	// held by a cut are counted when they cross, after the heal.
	BytesUp, BytesDown int64
	// Cut is true while the link is down.
	Cut bool
}

// Start opens a proxy for every link that has a target and returns once all
// listen on 127.0.0.1. targets maps a link name ("edge->fog") to the
// host:port on loopback its proxy forwards to, or to the name of another
// link, to chain the two (edge->cloud traffic crossing edge->fog, then
// fog->cloud). Links without a target get no proxy. Cuts wait for Run.
func Start(ctx context.Context, spec *Spec, targets map[string]string, opts ...Option) (*Network, error) {
	n := &Network{
		spec:     spec,
		log:      slog.New(slog.DiscardHandler),
		server:   toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop()),
		byName:   map[string]*link{},
		stopping: make(chan struct{}),
	}
	for _, o := range opts {
		o(n)
	}
	declared := map[string]Link{}
	for _, l := range spec.Links {
		declared[l.Name()] = l
	}
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(targets)) {
		t := targets[name]
		if _, ok := declared[name]; !ok {
			errs = append(errs, fmt.Errorf("target for %q: not a link in the network (have %s)", name, strings.Join(names(spec.Links), ", ")))
			continue
		}
		if _, isLink := declared[t]; isLink {
			if _, ok := targets[t]; !ok {
				errs = append(errs, fmt.Errorf("target for link %s: link %s has no target itself", name, t))
			}
			continue
		}
		if err := checkLoopback(t); err != nil {
			errs = append(errs, fmt.Errorf("target for link %s: %w", name, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("network: %w", err)
	}
	// Start links whose target is an address, then those chained to a
	// started link, until none is left or a chain loops.
	pending := slices.DeleteFunc(slices.Clone(spec.Links), func(l Link) bool { _, ok := targets[l.Name()]; return !ok })
	for len(pending) > 0 {
		progress := false
		for i := 0; i < len(pending); i++ {
			l := pending[i]
			upstream := targets[l.Name()]
			if _, isLink := declared[upstream]; isLink {
				next, started := n.byName[upstream]
				if !started {
					continue
				}
				upstream = next.addr
			}
			if err := ctx.Err(); err != nil {
				n.Stop(context.Background())
				return nil, err
			}
			if err := n.startLink(l, upstream); err != nil {
				n.Stop(context.Background())
				return nil, fmt.Errorf("network: link %s: %w", l.Name(), err)
			}
			pending = slices.Delete(pending, i, i+1)
			i--
			progress = true
		}
		if !progress {
			n.Stop(context.Background())
			return nil, fmt.Errorf("network: targets chain links in a loop: %s", strings.Join(names(pending), ", "))
		}
	}
	// Keep file order for Stats.
	n.links = nil
	for _, l := range spec.Links {
		if sl, ok := n.byName[l.Name()]; ok {
			n.links = append(n.links, sl)
		}
	}
	return n, nil
}

func checkLoopback(hostport string) error {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return fmt.Errorf("%q is neither host:port nor a link name", hostport)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("%q: port must be a number in [1, 65535]", hostport)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("%q is not a loopback address: emulated links stay on this machine", hostport)
	}
	return nil
}

// startLink builds the toxic chains of both directions, then starts the
// proxy. Each chain is
//
//	gate → bandwidth → stamp → latency → meter
//
// While the link is cut the gate holds its chunk and reads no more: the
// proxy stops reading the socket, the sender's kernel buffers fill and its
// writes block, like TCP with no acknowledgements. Toxiproxy's bandwidth
// toxic serializes; the stamp dates each chunk as it leaves, so that the
// latency toxic (which delays a chunk relative to its date) adds
// propagation after serialization, and held bytes pay the latency after
// the heal. The meter counts what leaves the chain.
func (n *Network) startLink(l Link, upstream string) error {
	sl := &link{Link: l, net: n, up: make(chan struct{})}
	close(sl.up)
	sl.proxy = toxiproxy.NewProxy(n.server, l.Name(), "127.0.0.1:0", upstream)
	for _, d := range []struct {
		dir stream.Direction
		sh  Shape
	}{{stream.Upstream, l.Up}, {stream.Downstream, l.Down}} {
		name := func(kind string) string { return kind + "_" + d.dir.String() }
		g, err := addToxic(sl.proxy, name("gate"), gateType, d.dir, nil)
		if err != nil {
			return err
		}
		g.(*gateToxic).link = sl
		if d.sh.Bandwidth > 0 {
			// Toxiproxy's rate is in KB/s (1000 bytes).
			rate := max(1, int64(math.Round(float64(d.sh.Bandwidth)/1000)))
			if _, err := addToxic(sl.proxy, name("bandwidth"), "bandwidth", d.dir, map[string]int64{"rate": rate}); err != nil {
				return err
			}
			if _, err := addToxic(sl.proxy, name("stamp"), stampType, d.dir, nil); err != nil {
				return err
			}
		}
		if d.sh.Latency > 0 {
			attrs := map[string]int64{"latency": d.sh.Latency.Milliseconds(), "jitter": d.sh.Jitter.Milliseconds()}
			if _, err := addToxic(sl.proxy, name("latency"), "latency", d.dir, attrs); err != nil {
				return err
			}
		}
		m, err := addToxic(sl.proxy, name("meter"), meterType, d.dir, nil)
		if err != nil {
			return err
		}
		m.(*meterToxic).link, m.(*meterToxic).dir = sl, d.dir
	}
	// The toxics are set before the proxy accepts its first connection.
	if err := n.server.Collection.Add(sl.proxy, true); err != nil {
		return err
	}
	sl.addr = sl.proxy.Listen
	n.links = append(n.links, sl)
	n.byName[l.Name()] = sl
	return nil
}

func addToxic(p *toxiproxy.Proxy, name, typ string, dir stream.Direction, attrs any) (toxics.Toxic, error) {
	req := map[string]any{"name": name, "type": typ, "stream": dir.String()}
	if attrs != nil {
		req["attributes"] = attrs
	}
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	w, err := p.Toxics.AddToxicJson(bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("toxic %s: %w", name, err)
	}
	return w.Toxic, nil
}

// Addr is the proxy address of a started link ("" if it has none).
func (n *Network) Addr(link string) string {
	if l, ok := n.byName[link]; ok {
		return l.addr
	}
	return ""
}

// Addrs maps every started link to its proxy address.
func (n *Network) Addrs() map[string]string {
	m := make(map[string]string, len(n.links))
	for _, l := range n.links {
		m[l.Name()] = l.addr
	}
	return m
}

// Stats reads every started link's counters, in file order.
func (n *Network) Stats() []LinkStats {
	s := make([]LinkStats, 0, len(n.links))
	for _, l := range n.links {
		s = append(s, LinkStats{
			From: l.From, To: l.To,
			BytesUp:   l.bytes[stream.Upstream].Load(),
			BytesDown: l.bytes[stream.Downstream].Load(),
			Cut:       !l.isUp(),
		})
	}
	return s
}

// Cut takes a link down now, in both directions: open connections stall
// and keep what they sent, new ones connect but nothing crosses.
func (n *Network) Cut(link string) error { return n.set(link, false) }

// Heal brings a link back up; what it held crosses first, in order.
func (n *Network) Heal(link string) error { return n.set(link, true) }

func (n *Network) set(link string, up bool) error {
	l, ok := n.byName[link]
	if !ok {
		return fmt.Errorf("network: link %q is not started", link)
	}
	l.setUp(up)
	return nil
}

func (l *link) setUp(up bool) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	select {
	case <-l.up:
		if up {
			return false
		}
		l.up = make(chan struct{})
	default:
		if !up {
			return false
		}
		close(l.up)
	}
	return true
}

func (l *link) upChan() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.up
}

func (l *link) isUp() bool {
	select {
	case <-l.upChan():
		return true
	default:
		return false
	}
}

// Run applies the file's cuts, each At after Run was called, and returns
// when ctx ends, with the links it cut up again. Cuts on links without a
// proxy are skipped.
func (n *Network) Run(ctx context.Context) error {
	t0 := time.Now()
	type event struct {
		at   time.Duration
		link *link
		up   bool
	}
	var events []event
	for _, c := range n.spec.Cuts {
		if l, ok := n.byName[c.Link]; ok {
			events = append(events, event{c.At, l, false}, event{c.At + c.For, l, true})
		}
	}
	// At equal times a heal goes first, so back-to-back cuts both apply.
	slices.SortStableFunc(events, func(a, b event) int {
		if c := cmp.Compare(a.at, b.at); c != 0 {
			return c
		}
		switch {
		case a.up == b.up:
			return 0
		case a.up:
			return -1
		}
		return 1
	})
	cut := map[*link]bool{}
	defer func() {
		for l := range cut {
			l.setUp(true)
		}
	}()
	for _, e := range events {
		t := time.NewTimer(time.Until(t0.Add(e.at)))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		if e.up {
			delete(cut, e.link)
		} else {
			cut[e.link] = true
		}
		if e.link.setUp(e.up) {
			msg := "link down"
			if e.up {
				msg = "link up"
			}
			n.log.Info(msg, "link", e.link.Name(), "at", time.Since(t0).Round(time.Millisecond))
		}
	}
	<-ctx.Done()
	return nil
}

// Stop closes every proxy and its connections, then waits until the bytes
// still inside the proxies are dropped, or ctx ends. Bytes not delivered by
// then are not counted.
func (n *Network) Stop(ctx context.Context) error {
	n.stopOnce.Do(func() {
		close(n.stopping)
		_ = n.server.Collection.Clear()
	})
	done := make(chan struct{})
	go func() {
		n.running.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("network: connections still draining: %w", ctx.Err())
	}
}

// gateToxic passes chunks while its link is up and holds them, reading no
// more, while it is cut. It dates each chunk as it passes. Once the network
// stops it drops them, so that Stop does not wait for held bytes to be
// serialized at the link's bandwidth.
type gateToxic struct{ link *link }

func (t *gateToxic) Pipe(stub *toxics.ToxicStub) { pipe(stub, t.link) }

// stampToxic dates each chunk as it passes.
type stampToxic struct{}

func (t *stampToxic) Pipe(stub *toxics.ToxicStub) { pipe(stub, nil) }

// pipe moves chunks from the stub's input to its output, dating each as it
// passes, until the stub is interrupted or its input ends. With a gate, a
// chunk waits while the gate's link is cut, and is dropped once the
// network stops.
func pipe(stub *toxics.ToxicStub, gate *link) {
	for {
		select {
		case <-stub.Interrupt:
			return
		case c := <-stub.Input:
			if c == nil {
				stub.Close()
				return
			}
			if gate != nil {
				select {
				case <-gate.upChan():
				case <-gate.net.stopping:
					continue
				case <-stub.Interrupt:
					stub.Output <- c // never drop bytes of a live stream
					return
				}
			}
			c.Timestamp = time.Now()
			stub.Output <- c
		}
	}
}

// meterToxic counts the bytes leaving a link's chain. Once the network
// stops it drops them instead, so that every chain drains even when the
// proxy no longer writes to its destination.
type meterToxic struct {
	link *link
	dir  stream.Direction
}

// NewState is called once per connection and direction, before Pipe.
func (t *meterToxic) NewState() any {
	t.link.net.running.Add(1)
	return nil
}

func (t *meterToxic) Pipe(stub *toxics.ToxicStub) {
	for {
		select {
		case <-stub.Interrupt:
			return
		case c := <-stub.Input:
			if c == nil {
				stub.Close()
				t.link.net.running.Done()
				return
			}
			n := int64(len(c.Data))
			t.link.bytes[t.dir].Add(n) // before the hand-over, so a reader that got them sees them counted
			select {
			case stub.Output <- c:
			case <-t.link.net.stopping:
				t.link.bytes[t.dir].Add(-n)
			}
		}
	}
}
