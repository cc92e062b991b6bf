package pipeline

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ddnn-continuum/ddnn/internal/wire"
)

// TestSitesBad checks every *.bad.yml fixture: one load reports every
// problem, each naming its YAML path, and nothing else.
func TestSitesBad(t *testing.T) {
	want := map[string][]string{
		"placement.bad.yml": {
			`sites[1] (edge).name: duplicate site name "edge"`,
			`sites[2] (Cloud).name: "Cloud" must be lowercase letters, digits, '-' or '_'`,
			`sites[3].name: required`,
			`tiers[0] (edge).site: required when sites: is present (one of edge)`,
			`tiers[1] (cloud).site: "cloud" unknown (sites: edge)`,
			`results.site: "devices" unknown (sites: edge)`,
		},
		"collisions.bad.yml": {
			`sites[1] (fog).funnel.url: "ftp://fog.example" is not an http(s) URL`,
			`sites[2] (cloud).funnel.url: "cloud.example:8080" is not an http(s) URL`,
			`sites[1] (fog).kafka.embedded_listen: 127.0.0.1:19092 is also sites[0] (edge).kafka.embedded_listen`,
			`sites[1] (fog).funnel.listen: 127.0.0.1:18080 is also sites[0] (edge).funnel.listen`,
			`sites[1] (fog).funnel.coap_listen: 127.0.0.1:15683 is also sites[0] (edge).funnel.coap_listen`,
			`sites[1] (fog).kafka.embedded_data_dir: "./data/kafka/" is also sites[0] (edge).kafka.embedded_data_dir: a broker's data dir is its own`,
			`sites[2] (cloud).admin.listen: 127.0.0.1:18080 is also sites[0] (edge).funnel.listen`,
			`sites[4] (lab2).kafka.embedded_listen: 127.0.0.1:9092 is also sites[3] (lab).kafka.embedded_listen`,
			`sites[4] (lab2).funnel.listen: 127.0.0.1:8080 is also sites[3] (lab).funnel.listen`,
			`sites[4] (lab2).funnel.delivery_listen: 127.0.0.1:8081 is also sites[3] (lab).funnel.delivery_listen`,
			`sites[4] (lab2).admin.listen: 127.0.0.1:9464 is also sites[3] (lab).admin.listen`,
		},
		"no-sites.bad.yml": {
			`tiers[0] (edge).site: "edge" given without a sites: section`,
			`results.site: "local" given without a sites: section`,
		},
		"settings.bad.yml": {
			`kafka.partitions: 2000 must be in [1, 1024]`,
			`funnel.max_connections: 4 must be at least 16`,
			`kafka.embedded_listen: set it per site (sites[].kafka.embedded_listen) when sites: is present`,
			`funnel.listen: set it per site (sites[].funnel.listen) when sites: is present`,
			`admin.listen: set it per site (sites[].admin.listen) when sites: is present`,
			`kafka.brokers: set it per site (sites[].kafka.brokers) when sites: is present`,
			`sites[0] (edge).kafka.produce_timeout: 10ms must be at least 1s`,
			`sites[0] (edge).kafka.replication_factor: 2 needs kafka.brokers: the embedded broker is one node`,
			`sites[0] (edge).kafka.topic_config: needs kafka.brokers: the embedded broker makes its topics with its own defaults`,
			`sites[0] (edge).funnel.listen: "nowhere" is not host:port`,
			`sites[0] (edge).kafka.max_record_bytes: 4096 is under the 4100 bytes a uint8 [4] sample's record takes`,
		},
	}
	files, err := filepath.Glob("testdata/*.bad.yml")
	if err != nil || len(files) == 0 {
		t.Fatalf("fixtures: %v %v", files, err)
	}
	for _, f := range files {
		if _, ok := want[filepath.Base(f)]; !ok {
			t.Errorf("%s has no expected errors in this table", f)
		}
	}
	for name, lines := range want {
		t.Run(name, func(t *testing.T) {
			file := filepath.Join("testdata", name)
			_, err := Load(file)
			if err == nil {
				t.Fatal("loaded")
			}
			got := strings.Split(strings.TrimPrefix(err.Error(), "pipeline "+file+": "), "\n")
			if !reflect.DeepEqual(got, lines) {
				t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(lines, "\n"))
			}
		})
	}
}

func TestSitesGoodLoad(t *testing.T) {
	files, err := filepath.Glob("testdata/*.good.yml")
	if err != nil || len(files) < 3 {
		t.Fatalf("fixtures: %v %v", files, err)
	}
	for _, f := range files {
		if _, err := Load(f); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

func siteNames(ss []Site) []string {
	var names []string
	for _, s := range ss {
		names = append(names, s.Name)
	}
	return names
}

func TestContinuum(t *testing.T) {
	p, err := Load("testdata/continuum.good.yml")
	if err != nil {
		t.Fatal(err)
	}
	if got := siteNames(p.Sites()); !reflect.DeepEqual(got, []string{"edge", "fog", "cloud"}) {
		t.Fatalf("sites %v", got)
	}
	edge, fog, cloud := p.SiteOf("edge"), p.SiteOf("fog"), p.SiteOf("cloud")
	if edge == nil || edge.Name != "edge" || fog.Name != "fog" || cloud.Name != "cloud" {
		t.Fatalf("SiteOf: %v %v %v", edge, fog, cloud)
	}
	if p.SiteOf("gpu") != nil {
		t.Error("SiteOf(unknown tier) is not nil")
	}
	if r := p.ResultsSite(); r != edge {
		t.Errorf("results on %v, want the edge site", r)
	}

	// Inherited where unset, the site's own value where set, built-in
	// defaults below both.
	for _, tc := range []struct {
		site          *Site
		partitions    int32
		maxConns      int
		listen, url   string
		embeddedDir   string
		coap, brokers string
	}{
		{edge, 8, 512, "127.0.0.1:19092", "http://127.0.0.1:18081", "", "127.0.0.1:15683", "127.0.0.1:19092"},
		{fog, 2, 512, "127.0.0.1:29092", "http://fog.example:28080", "data/fog", "off", "127.0.0.1:29092"},
		{cloud, 8, 64, "127.0.0.1:39092", "http://127.0.0.1:38081", "", "off", "127.0.0.1:39092"},
	} {
		k, f := tc.site.Kafka, tc.site.Funnel
		if k.Partitions != tc.partitions || k.ProduceTimeout != 3*time.Second || k.ClientID != DefaultClientID ||
			k.MaxRecordBytes != DefaultMaxRecordBytes || k.Replication() != 1 || !k.Embedded() ||
			k.EmbeddedListen != tc.listen || k.EmbeddedDataDir != tc.embeddedDir || k.SeedBrokers()[0] != tc.brokers {
			t.Errorf("site %s kafka = %+v", tc.site.Name, k)
		}
		if f.MaxConnections != tc.maxConns || f.MaxRequestBytes != p.Input.IngestBytes() || f.URL != tc.url || f.CoAPListen != tc.coap {
			t.Errorf("site %s funnel = %+v", tc.site.Name, f)
		}
	}
	// The top level keeps the pipeline-wide settings and no address.
	if p.Kafka.EmbeddedListen != "" || p.Funnel.Listen != "" || p.Admin.Listen != "" || p.Kafka.Partitions != 8 {
		t.Errorf("top level: kafka %+v funnel %+v admin %+v", p.Kafka, p.Funnel, p.Admin)
	}

	wantTopics := map[string][]string{
		"edge":  {"demo.edge.in", "demo.edge.dlq", "demo.results", "demo.uplink.fog", "demo.uplink.fog.dlq"},
		"fog":   {"demo.fog.in", "demo.fog.dlq", "demo.uplink.cloud", "demo.uplink.cloud.dlq", "demo.uplink.edge", "demo.uplink.edge.dlq"},
		"cloud": {"demo.cloud.in", "demo.cloud.dlq", "demo.uplink.edge", "demo.uplink.edge.dlq"},
		"local": nil,
	}
	for site, want := range wantTopics {
		if got := p.TopicsOn(site); !reflect.DeepEqual(got, want) {
			t.Errorf("TopicsOn(%s) = %v, want %v", site, got, want)
		}
	}
	wantLinks := []Link{{"edge", "fog"}, {"fog", "cloud"}, {"fog", "edge"}, {"cloud", "edge"}}
	if got := p.Links(); !reflect.DeepEqual(got, wantLinks) {
		t.Errorf("Links() = %v, want %v", got, wantLinks)
	}
	if got := p.UplinkGroup("edge"); got != "demo.uplink.edge.connector" {
		t.Errorf("UplinkGroup(edge) = %s", got)
	}
	if got := p.UplinkDLQTopic("edge"); got != "demo.uplink.edge.dlq" {
		t.Errorf("UplinkDLQTopic(edge) = %s", got)
	}
	onFog, err := p.OnSite("fog")
	if err != nil || onFog.Kafka.EmbeddedListen != p.SiteOf("fog").Kafka.EmbeddedListen || onFog.Funnel.Listen != p.SiteOf("fog").Funnel.Listen ||
		onFog.Admin != p.SiteOf("fog").Admin || p.Kafka.EmbeddedListen != "" {
		t.Errorf("OnSite(fog) = kafka %+v funnel %+v, %v", onFog.Kafka, onFog.Funnel, err)
	}
	if onFog != nil && (onFog.Name != "fog" || onFog.Pipeline != p) {
		t.Errorf("OnSite(fog) = site %q of %p, want fog of %p", onFog.Name, onFog.Pipeline, p)
	}
	for tier, site := range map[string]string{"edge": "edge", "cloud": "cloud"} {
		if v, err := p.OnTierSite(tier); err != nil || v.Name != site {
			t.Errorf("OnTierSite(%s) = %v, %v; want site %s", tier, v, err, site)
		}
	}
	if _, err := p.OnTierSite("nope"); err == nil {
		t.Error("OnTierSite(nope): no error")
	}
	if _, err := p.OnSite("moon"); err == nil || err.Error() != `pipeline "demo" has no site "moon" (sites: edge, fog, cloud)` {
		t.Errorf("OnSite(moon) = %v", err)
	}

	cwd, _ := filepath.Abs(".")
	yamlDir, _ := filepath.Abs("testdata")
	for site, want := range map[*Site]string{
		edge: filepath.Join(cwd, ".run", "demo", "edge", "kafka"),
		fog:  filepath.Join(yamlDir, "data", "fog"),
	} {
		if got, err := p.SiteDataDir(site); err != nil || got != want {
			t.Errorf("SiteDataDir(%s) = %s, %v; want %s", site.Name, got, err, want)
		}
	}
	if _, err := p.Site("moon"); err == nil || err.Error() != `pipeline "demo" has no site "moon" (sites: edge, fog, cloud)` {
		t.Errorf("Site(moon) = %v", err)
	}
}

func TestSitesOnRealKafka(t *testing.T) {
	p, err := Load("testdata/brokers.good.yml")
	if err != nil {
		t.Fatal(err)
	}
	edge, cloud := p.SiteOf("edge"), p.SiteOf("fog")
	if cloud != p.SiteOf("cloud") || cloud.Name != "cloud" || p.ResultsSite() != edge {
		t.Fatalf("placement: fog on %v, results on %v", cloud, p.ResultsSite())
	}
	if edge.Kafka.Replication() != 3 || cloud.Kafka.Replication() != 3 || edge.Kafka.Embedded() {
		t.Errorf("replication: edge %d, cloud %d", edge.Kafka.Replication(), cloud.Kafka.Replication())
	}
	if !reflect.DeepEqual(edge.Kafka.TopicConfig, map[string]string{"min.insync.replicas": "2"}) ||
		!reflect.DeepEqual(cloud.Kafka.TopicConfig, map[string]string{"retention.ms": "86400000"}) {
		t.Errorf("topic configs: edge %v, cloud %v", edge.Kafka.TopicConfig, cloud.Kafka.TopicConfig)
	}
	if edge.Kafka.ClientID != DefaultClientID || cloud.Kafka.ClientID != "cloud" {
		t.Errorf("client ids: edge %s, cloud %s", edge.Kafka.ClientID, cloud.Kafka.ClientID)
	}
	if edge.Funnel.URL != "https://edge.example" || cloud.Funnel.URL != "http://10.0.2.5:8081" || edge.Funnel.CoAPListen != "10.0.1.5:5683" {
		t.Errorf("funnels: edge %+v, cloud %+v", edge.Funnel, cloud.Funnel)
	}
	if got, want := p.Links(), []Link{{"edge", "cloud"}, {"cloud", "edge"}}; !reflect.DeepEqual(got, want) {
		t.Errorf("Links() = %v, want %v", got, want)
	}
	if got, want := p.TopicsOn("cloud"), []string{"demo.fog.in", "demo.fog.dlq", "demo.cloud.in", "demo.cloud.dlq", "demo.uplink.edge", "demo.uplink.edge.dlq"}; !reflect.DeepEqual(got, want) {
		t.Errorf("TopicsOn(cloud) = %v, want %v", got, want)
	}
}

// TestOneDeclaredSite checks that a pipeline with one declared site puts
// the site's effective settings in the top-level sections, which ddnn up
// and the roles read.
func TestOneDeclaredSite(t *testing.T) {
	p, err := Load("testdata/one-site.good.yml")
	if err != nil {
		t.Fatal(err)
	}
	s := p.Sites()[0]
	if !reflect.DeepEqual(p.Kafka, s.Kafka) || !reflect.DeepEqual(p.Funnel, s.Funnel.Funnel) || p.Admin != s.Admin {
		t.Errorf("top level kafka %+v funnel %+v admin %+v, site %+v", p.Kafka, p.Funnel, p.Admin, s)
	}
	if p.Kafka.EmbeddedListen != "127.0.0.1:19092" || p.Kafka.Partitions != 2 || p.Kafka.ProduceTimeout != 2*time.Second || p.Funnel.CoAPListen != "off" {
		t.Errorf("effective kafka %+v funnel %+v", p.Kafka, p.Funnel)
	}
	if got := p.TopicsOn("edge"); !reflect.DeepEqual(got, p.Topics()) || len(p.Links()) != 0 {
		t.Errorf("TopicsOn(edge) = %v, Links() = %v", got, p.Links())
	}
	cwd, _ := filepath.Abs(".")
	if got, err := p.BrokerDataDir(); err != nil || got != filepath.Join(cwd, ".run", "demo", "edge", "kafka") {
		t.Errorf("BrokerDataDir() = %s, %v", got, err)
	}
}

// TestSitesPrecedence checks the precedence of each inherited setting:
// the site's value, else the top level's, else the built-in default.
func TestSitesPrecedence(t *testing.T) {
	base := "name: x\ninput: {dtype: uint8, shape: [2]}\nclasses: [a, b]\ntiers:\n  - {name: t, site: s, model: m.onnx, exit: {output: o}}\n"
	for _, tc := range []struct {
		name, top, site string
		check           func(s *Site) bool
	}{
		{"partitions default", "", "", func(s *Site) bool { return s.Kafka.Partitions == DefaultPartitions }},
		{"partitions inherited", "kafka: {partitions: 6}\n", "", func(s *Site) bool { return s.Kafka.Partitions == 6 }},
		{"partitions own", "kafka: {partitions: 6}\n", "kafka: {partitions: 3}", func(s *Site) bool { return s.Kafka.Partitions == 3 }},
		{"produce timeout inherited", "kafka: {produce_timeout: 7s}\n", "", func(s *Site) bool { return s.Kafka.ProduceTimeout == 7*time.Second }},
		{"max record bytes own", "kafka: {max_record_bytes: 8192}\n", "kafka: {max_record_bytes: 16384}", func(s *Site) bool { return s.Kafka.MaxRecordBytes == 16384 }},
		{"sync writes inherited", "kafka: {embedded_sync_writes: true}\n", "", func(s *Site) bool { return s.Kafka.EmbeddedSyncWrites }},
		{"client id inherited", "kafka: {client_id: lab}\n", "", func(s *Site) bool { return s.Kafka.ClientID == "lab" }},
		{"replication inherited", "kafka: {replication_factor: 2}\n", "kafka: {brokers: ['k:9092']}", func(s *Site) bool { return s.Kafka.Replication() == 2 }},
		{"replication default per site", "", "kafka: {brokers: ['k:9092']}", func(s *Site) bool { return s.Kafka.Replication() == -1 }},
		{"topic config cleared", "kafka: {topic_config: {retention.ms: '1'}}\n", "kafka: {brokers: ['k:9092'], topic_config: {}}", func(s *Site) bool { return len(s.Kafka.TopicConfig) == 0 }},
		{"funnel max request default", "", "", func(s *Site) bool {
			return s.Funnel.MaxRequestBytes == (&Input{DType: wire.Uint8, Shape: []int{2}}).IngestBytes()
		}},
		{"funnel max request inherited", "funnel: {max_request_bytes: 2048}\n", "", func(s *Site) bool { return s.Funnel.MaxRequestBytes == 2048 }},
		{"funnel max connections own", "funnel: {max_connections: 100}\n", "funnel: {max_connections: 200}", func(s *Site) bool { return s.Funnel.MaxConnections == 200 }},
		{"funnel connection bounds inherited", "funnel: {max_connections_per_source: 8, per_source_exempt: [], idle_timeout: 5s, write_timeout: 3s}\n", "", func(s *Site) bool {
			return s.Funnel.MaxConnectionsPerSource == 8 && len(s.Funnel.PerSourceExempt) == 0 && s.Funnel.IdleTimeout == 5*time.Second && s.Funnel.WriteTimeout == 3*time.Second
		}},
		{"funnel connection bounds own", "funnel: {per_source_exempt: [], read_timeout: 20s}\n", "funnel: {per_source_exempt: [10.0.0.0/8], read_timeout: 40s}", func(s *Site) bool {
			return len(s.Funnel.PerSourceExempt) == 1 && s.Funnel.ReadTimeout == 40*time.Second
		}},
		{"addresses default", "", "", func(s *Site) bool {
			return s.Kafka.EmbeddedListen == DefaultEmbeddedBroker && s.Funnel.Listen == DefaultFunnelListen &&
				s.Funnel.CoAPListen == DefaultCoAPListen && s.Admin.Listen == DefaultAdminListen && s.Funnel.DeliveryListen == DefaultDeliveryListen && s.Funnel.URL == "http://"+DefaultDeliveryListen
		}},
		{"acls inherited", "kafka: {embedded_acls: true, sasl: [{mechanism: SCRAM-SHA-512, username: u, password_env: U}], embedded_users: [{username: u, mechanism: SCRAM-SHA-512, password_env: U}]}\n", "", func(s *Site) bool { return s.Kafka.EmbeddedACLs }},
		{"acls own false", "kafka: {embedded_acls: true, sasl: [{mechanism: SCRAM-SHA-512, username: u, password_env: U}], embedded_users: [{username: u, mechanism: SCRAM-SHA-512, password_env: U}]}\n", "kafka: {embedded_acls: false}", func(s *Site) bool { return !s.Kafka.EmbeddedACLs }},
		{"acls not on brokers", "kafka: {embedded_acls: true, sasl: [{mechanism: SCRAM-SHA-512, username: u, password_env: U}], embedded_users: [{username: u, mechanism: SCRAM-SHA-512, password_env: U}]}\n", "kafka: {brokers: ['k:9092']}", func(s *Site) bool { return !s.Kafka.EmbeddedACLs }},
		{"burst inherited with own rate", "funnel: {device_rate_limit: {rate: 10, burst: 50}}\n", "funnel: {device_rate_limit: {rate: 20}}", func(s *Site) bool {
			return s.Funnel.DeviceRateLimit.Rate == 20 && s.Funnel.DeviceRateLimit.Burst == 50
		}},
		{"burst derived from own rate", "funnel: {device_rate_limit: {rate: 10}}\n", "funnel: {device_rate_limit: {rate: 20}}", func(s *Site) bool {
			return s.Funnel.DeviceRateLimit.Burst == 20
		}},
		{"burst own", "funnel: {device_rate_limit: {rate: 10, burst: 50}}\n", "funnel: {device_rate_limit: {rate: 20, burst: 5}}", func(s *Site) bool {
			return s.Funnel.DeviceRateLimit.Burst == 5
		}},
		{"url from delivery_listen", "", "funnel: {listen: '10.0.0.1:80', delivery_listen: '10.0.0.1:81'}", func(s *Site) bool { return s.Funnel.URL == "http://10.0.0.1:81" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			site := "  - name: s\n"
			if tc.site != "" {
				site += "    " + tc.site + "\n"
			}
			p, err := Parse([]byte(base + tc.top + "sites:\n" + site))
			if err != nil {
				t.Fatal(err)
			}
			if s := p.SiteOf("t"); !tc.check(s) {
				t.Errorf("site = %+v", s)
			}
		})
	}
}

// TestImplicitSite checks that every shipped pipeline is one implicit
// site made of its top-level sections, with today's topics and no links.
func TestImplicitSite(t *testing.T) {
	for _, tc := range shippedYAML {
		t.Run(tc.golden, func(t *testing.T) {
			p := loadShipped(t, tc.file)
			want := []Site{{
				Name:   LocalSite,
				Kafka:  p.Kafka,
				Funnel: SiteFunnel{Funnel: p.Funnel, URL: "http://" + p.Funnel.DeliveryListen},
				Admin:  p.Admin,
			}}
			if got := p.Sites(); !reflect.DeepEqual(got, want) {
				t.Errorf("Sites() = %+v, want %+v", got, want)
			}
			for _, tier := range p.Tiers {
				if s := p.SiteOf(tier.Name); s == nil || !reflect.DeepEqual(*s, want[0]) {
					t.Errorf("SiteOf(%s) = %+v", tier.Name, s)
				}
			}
			if s := p.ResultsSite(); s == nil || s.Name != LocalSite {
				t.Errorf("ResultsSite() = %+v", s)
			}
			if got := p.TopicsOn(LocalSite); !reflect.DeepEqual(got, p.Topics()) {
				t.Errorf("TopicsOn(local) = %v, want %v", got, p.Topics())
			}
			if l := p.Links(); l != nil {
				t.Errorf("Links() = %v", l)
			}
			if s, err := p.Site(LocalSite); err != nil || s.Name != LocalSite {
				t.Errorf("Site(local) = %v, %v", s, err)
			}
			s := p.Sites()[0]
			d1, _ := p.SiteDataDir(&s)
			d2, _ := p.BrokerDataDir()
			if d1 != d2 {
				t.Errorf("SiteDataDir(local) = %s, BrokerDataDir() = %s", d1, d2)
			}
		})
	}
}

// TestContinuumExample checks the shipped three-site example.
func TestContinuumExample(t *testing.T) {
	p, err := Load("../../deploy/examples/continuum.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if got := siteNames(p.Sites()); !reflect.DeepEqual(got, []string{"edge", "fog", "cloud"}) {
		t.Errorf("sites %v", got)
	}
	for _, tier := range p.Tiers {
		if s := p.SiteOf(tier.Name); s.Name != tier.Name || !s.Kafka.Embedded() {
			t.Errorf("tier %s on %+v", tier.Name, s)
		}
	}
	if p.ResultsSite().Name != "edge" || len(p.Links()) != 4 {
		t.Errorf("results on %s, links %v", p.ResultsSite().Name, p.Links())
	}
	shipped, err := Load("../../deploy/pipeline.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(p.Classes, shipped.Classes) || !reflect.DeepEqual(p.Input, shipped.Input) || len(p.Tiers) != len(shipped.Tiers) {
		t.Errorf("continuum differs from the sample pipeline")
	}
	for i := range p.Tiers {
		a, b := p.Tiers[i], shipped.Tiers[i]
		if p.ModelPath(&a) != shipped.ModelPath(&b) || !reflect.DeepEqual(a.Exit, b.Exit) {
			t.Errorf("tier %s: model %s, exit %+v; sample pipeline: %s, %+v", a.Name, p.ModelPath(&a), a.Exit, shipped.ModelPath(&b), b.Exit)
		}
	}
	if p.Path(p.Eval.Images) != shipped.Path(shipped.Eval.Images) {
		t.Errorf("eval images %s", p.Path(p.Eval.Images))
	}
	if _, err := os.Stat(p.ModelPath(&p.Tiers[0])); err != nil {
		t.Error(err)
	}
}

// TestPlaceAllOn moves the continuum's tiers to the cloud, as the
// cloud-only baseline runs them: the results stay on the edge, the only
// link left carries the cloud's results there, and the topics follow.
func TestPlaceAllOn(t *testing.T) {
	p, err := Load("testdata/continuum.good.yml")
	if err != nil {
		t.Fatal(err)
	}
	p.Results.Site = "" // the default: the first tier's site, the edge
	if err := p.PlaceAllOn("cloud"); err != nil {
		t.Fatal(err)
	}
	for _, tier := range p.Tiers {
		if s := p.SiteOf(tier.Name); s == nil || s.Name != "cloud" {
			t.Errorf("tier %s on %v, want cloud", tier.Name, s)
		}
	}
	if r := p.ResultsSite(); r == nil || r.Name != "edge" || p.Results.Site != "edge" {
		t.Errorf("results on %v (results.site %q), want the edge as before", r, p.Results.Site)
	}
	if got, want := p.Links(), []Link{{"cloud", "edge"}}; !reflect.DeepEqual(got, want) {
		t.Errorf("Links() = %v, want %v", got, want)
	}
	for site, want := range map[string][]string{
		"edge":  {"demo.results"},
		"fog":   nil,
		"cloud": {"demo.edge.in", "demo.edge.dlq", "demo.fog.in", "demo.fog.dlq", "demo.cloud.in", "demo.cloud.dlq", "demo.uplink.edge", "demo.uplink.edge.dlq"},
	} {
		if got := p.TopicsOn(site); !reflect.DeepEqual(got, want) {
			t.Errorf("TopicsOn(%s) = %v, want %v", site, got, want)
		}
	}
	// On the results site itself: no link at all.
	if err := p.PlaceAllOn("edge"); err != nil || len(p.Links()) != 0 || p.ResultsSite().Name != "edge" {
		t.Errorf("PlaceAllOn(edge): %v, links %v, results on %s", err, p.Links(), p.ResultsSite().Name)
	}
	if err := p.PlaceAllOn("moon"); err == nil || err.Error() != `pipeline "demo" has no site "moon" (sites: edge, fog, cloud)` {
		t.Errorf("PlaceAllOn(moon) = %v", err)
	}

	// Without sites: only the implicit site, a no-op.
	one := loadShipped(t, shippedYAML[0].file)
	for _, name := range []string{"", LocalSite} {
		if err := one.PlaceAllOn(name); err != nil || one.Results.Site != "" || one.Tiers[0].Site != "" {
			t.Errorf("PlaceAllOn(%q) without sites: %v, results.site %q", name, err, one.Results.Site)
		}
	}
	if err := one.PlaceAllOn("cloud"); err == nil {
		t.Error("PlaceAllOn(cloud) without sites: no error")
	}
}

// TestSiteExposure: a site whose own funnel.tls asks devices for client
// certificates authenticates its device zone, whatever the pipeline-wide
// funnel section says; the delivery zone needs auth.service.
func TestSiteExposure(t *testing.T) {
	p, err := Parse([]byte(`
name: t
input: {dtype: uint8, shape: [4]}
classes: [a, b]
sites:
  - {name: edge, funnel: {listen: 127.0.0.1:0, delivery_listen: 127.0.0.1:0}, kafka: {embedded_listen: 127.0.0.1:0}, admin: {listen: 127.0.0.1:0}}
  - name: cloud
    kafka: {embedded_listen: 127.0.0.1:0}
    funnel: {listen: 127.0.0.1:0, delivery_listen: 127.0.0.1:0, coap_listen: "off", tls: {cert_file: c.pem, key_file: k.pem, client_ca_file: ca.pem}}
    admin: {listen: 127.0.0.1:0}
tiers:
  - {name: edge, site: edge, model: e.onnx, exit: {output: o, threshold: 0.5}, forward: {output: f}}
  - {name: cloud, site: cloud, model: c.onnx, exit: {output: o}}
`))
	if err != nil {
		t.Fatal(err)
	}
	cloud, _ := p.OnSite("cloud")
	edge, _ := p.OnSite("edge")
	for _, c := range []struct {
		name       string
		v          *SiteView
		zone, addr string
		refused    bool
	}{
		{"loopback", edge, "device", "127.0.0.1:8080", false},
		{"site with client CA", cloud, "device", "192.0.2.1:8080", false},
		{"site without", edge, "device", "192.0.2.1:8080", true},
		{"delivery without auth.service", cloud, "delivery", "192.0.2.1:8081", true},
	} {
		err := c.v.CheckExposure(c.zone, "funnel listener", c.addr)
		if (err != nil) != c.refused {
			t.Errorf("%s: CheckExposure(%s, %s) = %v, refused %v", c.name, c.zone, c.addr, err, c.refused)
		}
	}
}
