// Package kafka owns ddnn's Kafka plumbing shared by every role: client
// options built from the pipeline's kafka section (with franz-go's kprom
// metrics) that each role extends with ProducerOptions and
// GroupConsumerOptions, topic creation, and the embedded Kafka-protocol broker that
// `ddnn up` and `ddnn broker` run when no brokers are configured.
//
// It must not know about messages or tiers beyond topic names: encoding is
// internal/wire's, consuming and producing policy is the funnel's and the
// connector's.
package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kprom"

	"github.com/ddnn-continuum/ddnn/internal/pipeline"
)

// ClientOptions are the options every ddnn Kafka client starts from: seed
// brokers, a client id naming the role, the section's TLS and SASL (see
// securityOptions), and kprom metrics when reg is set. log (nil: the
// default logger) gets the warning of a client that skips certificate
// verification. The error names each setting whose files or variables
// cannot be read; it never holds a secret.
func ClientOptions(k *pipeline.Kafka, role string, reg prometheus.Registerer, log *slog.Logger) ([]kgo.Opt, error) {
	if log == nil {
		log = slog.Default()
	}
	sec, err := securityOptions(k, role, log)
	if err != nil {
		return nil, err
	}
	opts := []kgo.Opt{
		kgo.SeedBrokers(k.SeedBrokers()...),
		kgo.ClientID(k.ClientID + "-" + role),
		kgo.DialTimeout(3 * time.Second),
		kgo.RetryTimeout(k.ProduceTimeout),
	}
	if reg != nil {
		m := kprom.NewMetrics("ddnn_kafka", kprom.Registerer(reg), kprom.WithClientLabel())
		opts = append(opts, kgo.WithHooks(m))
	}
	return append(opts, sec...), nil
}

// NewClient is a client of k for role with ClientOptions and then extra.
func NewClient(k *pipeline.Kafka, role string, reg prometheus.Registerer, log *slog.Logger, extra ...kgo.Opt) (*kgo.Client, error) {
	opts, err := ClientOptions(k, role, reg, log)
	if err != nil {
		return nil, err
	}
	return kgo.NewClient(append(opts, extra...)...)
}

// Broker is the embedded Kafka-protocol broker. With a data directory it
// keeps topics, records and committed offsets on disk and reloads them at
// the next start; without one it keeps everything in memory.
//
// Records reach the data directory with a write(2) before the produce is
// acknowledged, and commits before the commit is, so they survive the
// process being killed: the kernel holds them. Only a machine crash can
// lose what was not yet flushed, unless SyncWrites fsyncs every batch.
type Broker struct {
	cluster *kfake.Cluster
	addr    string
	dataDir string
	lock    *os.File // holds the data directory's lock; nil in memory
	log     *slog.Logger
	watch   *storageWatch // nil in memory
}

// StartSiteBroker starts the embedded broker of site (one of p's sites)
// on addr, or on the site's kafka.embedded_listen when addr is empty, with
// the topics that live on the site; it keeps them in the site's data
// directory (pipeline.SiteDataDir), syncing writes if the site asks, unless
// ephemeral. It requires what the site's embedded_tls, embedded_users and
// embedded_acls say; extra are added to those options (BrokerMetrics).
func StartSiteBroker(p *pipeline.Pipeline, site *pipeline.Site, addr string, ephemeral bool, log *slog.Logger, extra ...BrokerOpt) (*Broker, error) {
	k := &site.Kafka
	key := "--listen"
	if addr == "" {
		addr, key = k.EmbeddedListen, "kafka.embedded_listen"
		if len(p.SiteList) > 1 {
			key = fmt.Sprintf("site %q %s", site.Name, key)
		}
	}
	exposed := *k
	exposed.EmbeddedListen = addr
	if err := exposed.CheckEmbeddedExposure(key); err != nil {
		return nil, fmt.Errorf("embedded broker: %w", err)
	}
	opts, err := siteSecurity(p, k)
	if err != nil {
		return nil, fmt.Errorf("embedded broker: %w", err)
	}
	if !ephemeral {
		dir, err := p.SiteDataDir(site)
		if err != nil {
			return nil, fmt.Errorf("embedded broker data dir: %w", err)
		}
		opts = append(opts, DataDir(dir))
		if k.EmbeddedSyncWrites {
			opts = append(opts, SyncWrites())
		}
	}
	return StartBroker(addr, k.Partitions, p.TopicsOn(site.Name), log, append(opts, extra...)...)
}

// BrokerOpt configures StartBroker.
type BrokerOpt func(*brokerConfig)

type brokerConfig struct {
	dataDir    string
	syncWrites bool
	sec        brokerSecurity
	reg        prometheus.Registerer
	probeEvery time.Duration
	trustData  bool
}

// BrokerMetrics registers the broker's storage metrics with reg:
// ddnn_broker_storage_errors_total{kind} and ddnn_broker_storage_failing.
func BrokerMetrics(reg prometheus.Registerer) BrokerOpt {
	return func(c *brokerConfig) { c.reg = reg }
}

// DataDir keeps the broker's topics, records and committed offsets in dir
// (created if missing) and reloads them at start. One broker at a time may
// use a directory.
func DataDir(dir string) BrokerOpt { return func(c *brokerConfig) { c.dataDir = dir } }

// SyncWrites fsyncs every record batch and commit, so a machine crash
// loses nothing acknowledged; it costs throughput.
func SyncWrites() BrokerOpt { return func(c *brokerConfig) { c.syncWrites = true } }

// StartBroker listens on addr (host:port; port 0 picks one) and creates the
// topics that do not exist yet, each with partitions.
func StartBroker(addr string, partitions int32, topics []string, log *slog.Logger, opts ...BrokerOpt) (*Broker, error) {
	cfg := brokerConfig{probeEvery: time.Second}
	for _, o := range opts {
		o(&cfg)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("embedded broker address %q: %w", addr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("embedded broker address %q: bad port", addr)
	}
	kopts := []kfake.Opt{
		kfake.Ports(port),
		kfake.ListenFn(func(network, given string) (net.Listener, error) {
			_, p, _ := net.SplitHostPort(given)
			return net.Listen(network, net.JoinHostPort(host, p))
		}),
		kfake.DefaultNumPartitions(int(partitions)),
	}
	blog := &brokerLogger{log: log.With("component", "broker")}
	kopts = append(kopts, kfake.WithLogger(blog))
	kopts, admin, err := cfg.sec.apply(kopts)
	if err != nil {
		return nil, err
	}
	b := &Broker{dataDir: cfg.dataDir, log: log}
	restored := false
	if cfg.dataDir != "" {
		if b.lock, err = lockDataDir(cfg.dataDir); err != nil {
			return nil, err
		}
		if restored, err = prepareDataDir(cfg.dataDir); err != nil {
			b.unlock()
			return nil, fmt.Errorf("embedded broker data dir: %w", err)
		}
		m, err := newStorageMetrics(cfg.reg)
		if err != nil {
			b.unlock()
			return nil, err
		}
		clean, err := cleanStopped(cfg.dataDir)
		if err != nil {
			b.unlock()
			return nil, fmt.Errorf("embedded broker data dir: %w", err)
		}
		rec, err := checkDataDir(cfg.dataDir, clean)
		if rec != nil {
			logRecovery(blog.log, m, rec)
		}
		if err != nil {
			b.unlock()
			return nil, err
		}
		if err := checkProvenance(cfg.dataDir, restored, cfg.sec.required(), cfg.trustData); err != nil {
			b.unlock()
			return nil, err
		}
		if err := dropCleanStop(cfg.dataDir); err != nil {
			b.unlock()
			return nil, fmt.Errorf("embedded broker data dir: %w", err)
		}
		b.watch = newStorageWatch(blog.log, m, cfg.dataDir, cfg.probeEvery)
		blog.watch = b.watch
		kopts = append(kopts, kfake.DataDir(cfg.dataDir))
		if cfg.syncWrites {
			kopts = append(kopts, kfake.SyncWrites())
		}
	}
	c, err := kfake.NewCluster(kopts...)
	if err != nil {
		b.unlock()
		return nil, fmt.Errorf("embedded broker on %s: %w", addr, err)
	}
	b.cluster, b.addr = c, c.ListenAddrs()[0]
	for _, t := range topics {
		if err := c.CreateTopic(t, partitions, nil); err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
			b.Close()
			return nil, fmt.Errorf("embedded broker: create topic %s: %w", t, err)
		}
	}
	if len(cfg.sec.users) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := cfg.sec.advertiseHandshakeV0(ctx, c, b.addr)
		if err == nil && admin != nil {
			err = cfg.sec.createACLs(ctx, b.addr, admin)
		}
		cancel()
		if err != nil {
			b.Close()
			return nil, fmt.Errorf("embedded broker: %w", err)
		}
	}
	if cfg.dataDir != "" {
		// What kfake wrote while starting (topics.json, acls.json).
		if err := restrictDataDir(cfg.dataDir); err != nil {
			b.Close()
			return nil, fmt.Errorf("embedded broker data dir: %w", err)
		}
	}
	attrs := []any{"addr", b.addr, "topics", len(topics), "partitions", partitions}
	if cfg.dataDir == "" {
		attrs = append(attrs, "storage", "memory")
	} else {
		attrs = append(attrs, "data_dir", cfg.dataDir, "restored", restored, "sync_writes", cfg.syncWrites)
	}
	attrs = append(attrs, "tls", cfg.sec.cert != nil, "sasl_users", len(cfg.sec.users), "acls", cfg.sec.acls)
	log.Info("embedded broker listening", attrs...)
	return b, nil
}

// lockDataDir creates dir and takes its lock file, which the kernel
// releases when the process ends however it ends.
func lockDataDir(dir string) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("embedded broker data dir: %w", err)
	}
	path := filepath.Join(dir, "lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("embedded broker data dir: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(path)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("embedded broker data dir %s is in use by another broker (pid %s)", dir, strings.TrimSpace(string(holder)))
		}
		return nil, fmt.Errorf("embedded broker data dir %s: lock: %w", dir, err)
	}
	f.Truncate(0)
	f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return f, nil
}

func (b *Broker) unlock() {
	if b.watch != nil {
		b.watch.close()
	}
	if b.lock != nil {
		b.lock.Close() // releases the flock
		b.lock = nil
	}
}

// Addr is the broker's host:port.
func (b *Broker) Addr() string { return b.addr }

// DataDir is where the broker keeps its data; empty when in memory.
func (b *Broker) DataDir() string { return b.dataDir }

// Close stops the broker; with a data directory it saves its state there
// first and then releases the directory.
//
// Once kfake has saved its state without a storage error, the directory
// is marked as stopped cleanly (see checkDataDir).
func (b *Broker) Close() {
	var errs int
	if b.watch != nil {
		errs = b.watch.errorCount()
	}
	b.cluster.Close()
	if b.dataDir != "" {
		// kfake creates files 0644 and directories 0755 (inside the
		// 0700 data directory); what it wrote at shutdown is made
		// owner-only before the directory is released.
		if err := restrictDataDir(b.dataDir); err != nil {
			b.log.Error("embedded broker data dir permissions", "data_dir", b.dataDir, "err", err)
		}
		if b.watch != nil && (b.watch.errorCount() != errs || b.watch.isFailing()) {
			b.log.Error("embedded broker did not save its data dir cleanly at stop; the next start recovers it as after a crash", "data_dir", b.dataDir)
		} else if err := markCleanStop(b.dataDir); err != nil {
			b.log.Error("embedded broker could not mark its data dir as stopped cleanly; the next start recovers it as after a crash", "data_dir", b.dataDir, "err", err)
		}
	}
	b.unlock()
}

// batchOverhead is a record batch's header: what a batch of one record
// adds to the record.
const batchOverhead = 61

// ProducerOptions are the options of every ddnn producer: acks from all
// in-sync replicas, the pipeline's delivery timeout, and batches that stay
// within kafka.max_record_bytes plus a batch header, so that no record
// ddnn accepts is refused by a broker keeping Kafka's 1 MiB default.
//
// The delivery timeout fails a record only while it is safe for the
// idempotent producer: before it was sent, or after a broker answered. A
// record in a produce request to a broker that hangs is kept until the
// broker answers, however long that takes (the connection's read deadline
// cuts the request, but the record is sent again); a producer that must
// answer in time adds kgo.AllowIdempotentProduceCancellation, as the
// funnel does.
//
// Records do not linger (kgo's default waits 10 ms for a batch to fill,
// on every hop of a message at low rates): a record goes at once when
// its partition has no request in flight, and records produced meanwhile
// wait for that request and go together, so batches grow with the rate
// by themselves.
func ProducerOptions(k *pipeline.Kafka) []kgo.Opt {
	return []kgo.Opt{
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordDeliveryTimeout(k.ProduceTimeout),
		kgo.ProducerBatchMaxBytes(int32(k.MaxRecordBytes + batchOverhead)),
		kgo.ProducerLinger(0),
	}
}

// GroupConsumerOptions are the options of every ddnn consumer that commits
// what it finished, at least once, as a member of group: it consumes topics
// from their start while the group has no commits, commits only when the
// caller says so (no autocommit), and holds a rebalance from the end of a
// poll until the caller calls AllowRebalance (kgo.BlockRebalanceOnPoll),
// once giving the poll's records up is safe: when they are committed, or
// when they are tracked so that its OnPartitionsRevoked commits what is
// done of a revoked partition and the rest is redelivered. A fetch waits
// at most 250ms, and a crashed member's partitions move to a live one
// after a 10s session instead of kgo's 45s default, which would stall a
// tier for that long.
func GroupConsumerOptions(group string, topics ...string) []kgo.Opt {
	return []kgo.Opt{
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(topics...),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.FetchMaxWait(250 * time.Millisecond),
		kgo.SessionTimeout(10 * time.Second),
		kgo.HeartbeatInterval(time.Second),
	}
}

// RecordSize is an upper bound of r's encoded size in a record batch: its
// key, value and headers with the largest length prefixes.
func RecordSize(r *kgo.Record) int {
	const (
		varint  = 5  // a length or count
		varlong = 10 // the timestamp delta
	)
	n := varint + 1 + varlong + varint + varint + len(r.Key) + varint + len(r.Value) + varint
	for _, h := range r.Headers {
		n += varint + len(h.Key) + varint + len(h.Value)
	}
	return n
}

// storageProbeEvery sets how often a failing data directory is probed
// (tests; one second otherwise).
func storageProbeEvery(d time.Duration) BrokerOpt {
	return func(c *brokerConfig) { c.probeEvery = d }
}
