package pipeline

import (
	"math"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Defaults are set before decoding, as Prometheus does: the YAML overwrites
// what it names, so an explicit 0 stays 0 and validation decides whether
// it is allowed (stabilization_window: 0 is; max_batch: 0 is not). A
// default that depends on another setting (funnel.max_request_bytes on the
// input, a burst on its rate, a Deployment's name on its tier) is derived
// after decoding, only when its key is absent.
//
// A declared site starts from the top-level kafka and funnel sections as
// decoded, so what it leaves out is inherited and what it sets, 0
// included, is its own. Its addresses start from the single-site
// defaults, and the lists, maps and pointers it may replace as a whole
// (tls, sasl, topic_config, embedded_*) are inherited after decoding when
// left out.

// newPipeline is a pipeline before decoding: every static default set.
// sites says whether the YAML declares sites, whose addresses are then
// their own and the top-level ones stay empty.
func newPipeline(sites bool) Pipeline {
	p := Pipeline{
		Input:        Input{Scale: 1},
		WireEncoding: EncodingBinary,
		Telemetry:    Telemetry{SampleRatio: DefaultSampleRatio},
		Kafka: Kafka{
			Partitions:     DefaultPartitions,
			ClientID:       DefaultClientID,
			ProduceTimeout: DefaultProduceTimeout,
			MaxRecordBytes: DefaultMaxRecordBytes,
		},
		Funnel: Funnel{
			MaxConnections:          DefaultFunnelMaxConnections,
			MaxConnectionsPerSource: DefaultFunnelMaxConnectionsPerSource,
			PerSourceExempt:         DefaultFunnelPerSourceExempt,
			MaxHeaderBytes:          DefaultFunnelMaxHeaderBytes,
			ReadHeaderTimeout:       DefaultFunnelReadHeaderTimeout,
			ReadTimeout:             DefaultFunnelReadTimeout,
			IdleTimeout:             DefaultFunnelIdleTimeout,
			WriteTimeout:            DefaultFunnelWriteTimeout,
			DeviceRateLimit: RateLimit{
				MaxDevices: DefaultRateLimitMaxDevices,
			},
			CoAPReassembly: CoAPReassembly{
				TransferTimeout:     DefaultCoAPTransferTimeout,
				MaxTransfersPerPeer: DefaultCoAPTransfersPerPeer,
				MaxBytes:            DefaultCoAPReassemblyBytes,
			},
			Wait: Wait{
				Max:                 DefaultWaitMax,
				MaxWaiters:          DefaultMaxWaiters,
				MaxWaitersPerDevice: DefaultMaxWaitersPerDevice,
			},
		},
	}
	if !sites {
		p.Kafka.EmbeddedListen = DefaultEmbeddedBroker
		p.Funnel.setAddressDefaults()
		p.Admin.Listen = DefaultAdminListen
	}
	return p
}

func (fu *Funnel) setAddressDefaults() {
	fu.Listen = DefaultFunnelListen
	fu.DeliveryListen = DefaultDeliveryListen
	fu.CoAPListen = DefaultCoAPListen
	fu.CoAPSListen = DefaultCoAPSListen
}

// newTier is a tier before decoding.
func newTier() Tier {
	return Tier{
		Exit: Exit{Scores: ScoresProbabilities, Policy: PolicyMaxProb},
		Inference: Inference{
			IntraOpThreads:  DefaultIntraOpThreads,
			MaxBatch:        DefaultMaxBatch,
			MaxRequestBytes: DefaultMaxRequestBytes,
		},
		Connector: Connector{
			MaxBatch:           DefaultConnectorMaxBatch,
			InFlightPerReplica: DefaultInFlightPerReplica,
			MaxAttempts:        DefaultMaxAttempts,
			MaxPendingRecords:  DefaultMaxPendingRecords,
			Backoff:            DefaultBackoff,
			MaxBackoff:         DefaultMaxBackoff,
			RequestTimeout:     DefaultRequestTimeout,
		},
		Replicas: Replicas{
			Min: DefaultReplicas, Max: DefaultReplicas,
			Runtime:    RuntimeProcess,
			Kubernetes: KubernetesTarget{Port: 8090},
		},
		Scaling: DefaultScaling(),
	}
}

// DefaultScaling is a tier's scaling section when the YAML leaves it out;
// the scaler, alone or under `ddnn up`, runs with these values too.
func DefaultScaling() Scaling {
	return Scaling{
		PollInterval:        time.Second,
		TargetDrain:         10 * time.Second,
		LagPerReplica:       100,
		ActivationLag:       1,
		StabilizationWindow: 30 * time.Second,
		CooldownToZero:      60 * time.Second,
	}
}

// UnmarshalYAML decodes a tier onto its defaults.
func (t *Tier) UnmarshalYAML(n *yaml.Node) error {
	*t = newTier()
	type plain Tier
	return n.Decode((*plain)(t))
}

// UnmarshalYAML decodes an embedded user onto its defaults.
func (u *EmbeddedUser) UnmarshalYAML(n *yaml.Node) error {
	*u = EmbeddedUser{Role: RolePipeline}
	type plain EmbeddedUser
	return n.Decode((*plain)(u))
}

// decode decodes the checked document onto the defaults: the top level
// first, then each site onto what it inherits from it.
func decode(doc *yaml.Node) (*Pipeline, error) {
	root := doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	var sites []*yaml.Node
	if s := lookup(root, "sites"); s != nil && s.Kind == yaml.SequenceNode {
		sites = s.Content
	}
	p := newPipeline(len(sites) > 0)
	top := *root
	top.Content = nil
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value != "sites" {
			top.Content = append(top.Content, root.Content[i], root.Content[i+1])
		}
	}
	if err := top.Decode(&p); err != nil {
		return nil, err
	}
	p.SiteList = nil
	p.deriveDefaults(root)
	for _, n := range sites {
		s := p.newSite()
		if err := n.Decode(&s); err != nil {
			return nil, err
		}
		p.deriveSiteDefaults(&s, n, root)
		p.SiteList = append(p.SiteList, s)
	}
	return &p, nil
}

// deriveDefaults fills the top-level defaults that depend on other
// settings, for the keys the YAML leaves out.
func (p *Pipeline) deriveDefaults(root *yaml.Node) {
	fu := &p.Funnel
	if !present(root, "funnel", "max_request_bytes") {
		fu.MaxRequestBytes = p.Input.IngestBytes()
	}
	if !present(root, "funnel", "coap_reassembly", "max_bytes_per_peer") {
		fu.CoAPReassembly.MaxBytesPerPeer = defaultCoAPPeerBytesPerRequest * fu.MaxRequestBytes
	}
	if !present(root, "funnel", "device_rate_limit", "burst") {
		fu.DeviceRateLimit.Burst = defaultBurst(fu.DeviceRateLimit.Rate)
	}
	p.Auth.setDefaults()
	for i := range p.Tiers {
		t := &p.Tiers[i]
		k := &t.Replicas.Kubernetes
		setDefault(&k.Namespace, "ddnn")
		setDefault(&k.Deployment, "ddnn-inference-"+t.Name)
		setDefault(&k.Service, "ddnn-inference-"+t.Name)
	}
}

// defaultBurst is one second's worth of a rate: rounded up, at least 1;
// 0 while the limit is off.
func defaultBurst(rate float64) int {
	if rate <= 0 || math.IsInf(rate, 0) || math.IsNaN(rate) {
		return 0
	}
	return max(1, int(math.Ceil(min(rate, math.MaxInt32))))
}

// newSite is a declared site before decoding: the top-level settings it
// inherits, and the single-site defaults of its addresses.
func (p *Pipeline) newSite() Site {
	k := p.Kafka
	k.Brokers, k.EmbeddedDataDir, k.EmbeddedListen = nil, "", DefaultEmbeddedBroker
	// Inherited after decoding when left out (see inheritSecurity).
	k.TopicConfig, k.TLS, k.SASL = nil, nil, nil
	k.EmbeddedTLS, k.EmbeddedUsers, k.EmbeddedACLs = nil, nil, false
	fu := p.Funnel
	fu.setAddressDefaults()
	fu.TLS = FunnelTLS{} // inherited as a whole after decoding
	return Site{
		Kafka:  k,
		Funnel: SiteFunnel{Funnel: fu},
		Admin:  Admin{Listen: DefaultAdminListen},
	}
}

// deriveSiteDefaults fills what site s, decoded from n, inherits as a
// whole or derives from its own settings; root is the whole YAML.
func (p *Pipeline) deriveSiteDefaults(s *Site, n, root *yaml.Node) {
	k, fu, top := &s.Kafka, &s.Funnel, &p.Funnel
	if k.TopicConfig == nil {
		k.TopicConfig = p.Kafka.TopicConfig
	}
	k.inheritSecurity(&p.Kafka)
	if k.Embedded() && !present(n, "kafka", "embedded_acls") {
		k.EmbeddedACLs = p.Kafka.EmbeddedACLs // a site's own false is kept
	}
	setDefault(&fu.TLS, top.TLS)
	co, rl := &fu.CoAPReassembly, &fu.DeviceRateLimit
	if !present(n, "funnel", "coap_reassembly", "max_bytes_per_peer") && fu.MaxRequestBytes != top.MaxRequestBytes {
		co.MaxBytesPerPeer = defaultCoAPPeerBytesPerRequest * fu.MaxRequestBytes
	}
	// A burst the top level sets is inherited; one it derives from its
	// rate is derived again from a rate of the site's own.
	if !present(n, "funnel", "device_rate_limit", "burst") && !present(root, "funnel", "device_rate_limit", "burst") &&
		rl.Rate != top.DeviceRateLimit.Rate {
		rl.Burst = defaultBurst(rl.Rate)
	}
	setDefault(&fu.URL, "http://"+fu.DeliveryListen)
	fu.URL = strings.TrimSuffix(fu.URL, "/")
}

// setDefault sets *v to def when it is the zero value: for the derived
// defaults whose zero value means "not set" (an empty name or URL).
func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// lookup returns the value of the key at path under the mapping n (merges
// followed), or nil when any key on the way is absent.
func lookup(n *yaml.Node, path ...string) *yaml.Node {
	for _, key := range path {
		n = lookupKey(n, key, 0)
		if n == nil {
			return nil
		}
	}
	return n
}

func lookupKey(n *yaml.Node, key string, depth int) *yaml.Node {
	if n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		n = n.Content[0]
	}
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n == nil || n.Kind != yaml.MappingNode || depth > 8 {
		return nil
	}
	var merged *yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		switch {
		case k.Value == key:
			if v.Kind == yaml.AliasNode {
				v = v.Alias
			}
			return v
		case k.Value == "<<" && merged == nil:
			if v.Kind == yaml.AliasNode {
				v = v.Alias
			}
			if v == nil {
				continue
			}
			sources := []*yaml.Node{v}
			if v.Kind == yaml.SequenceNode {
				sources = v.Content
			}
			for _, m := range sources {
				if found := lookupKey(m, key, depth+1); found != nil {
					merged = found
					break
				}
			}
		}
	}
	return merged
}

// present reports whether the key at path is set under n (to anything but
// null).
func present(n *yaml.Node, path ...string) bool {
	v := lookup(n, path...)
	return v != nil && !(v.Kind == yaml.ScalarNode && v.ShortTag() == "!!null")
}
