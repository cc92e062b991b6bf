// Package kafkatest runs a real Apache Kafka cluster on loopback for
// integration tests: KRaft nodes that are brokers and controllers at once,
// started from the jars scripts/kafka-deps.sh installs under
// .deps/kafka/<Version>/libs, each with its own temporary log directory
// formatted by Kafka's storage tool and a small heap.
//
// A test can SIGKILL a node and start it again on the same ports and log
// directory, find the leader of a partition, and run Kafka's own command-line
// tools from the same jars. Every JVM is stopped by its PID.
//
// With Config.Security the clients must use TLS and SASL/SCRAM-SHA-512
// and, optionally, Kafka's ACLs apply (see Security).
//
// It must not be imported by anything but tests. When Java or the jars are
// missing, Start returns an error wrapping ErrUnavailable and New skips the
// test with the reason.
package kafkatest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Version is the Apache Kafka release scripts/kafka-deps.sh fetches.
const Version = "4.4.0"

// ErrUnavailable is wrapped by the errors that mean this machine cannot run
// Apache Kafka (no Java 17+, no jars): tests skip on it instead of failing.
var ErrUnavailable = errors.New("apache kafka unavailable")

// Config says what cluster to start. The zero value (with Root set) is a
// 3-node cluster with 256 MiB heaps.
type Config struct {
	// Root is the ddnn checkout whose .deps/kafka holds the jars. The
	// KAFKA_LIBS environment variable, when set, names the jar directory
	// instead.
	Root string
	// Nodes is the number of KRaft nodes; default 3.
	Nodes int
	// Heap is each JVM's -Xmx; default 256m.
	Heap string
	// Java is the java binary; default $JAVA, else java on PATH.
	Java string
	// BrokerProps are added to (or override) each node's server.properties.
	BrokerProps map[string]string
	// Dir holds the nodes' directories; default a new temporary directory
	// that Stop removes.
	Dir string
	// Logf, when set, receives progress lines (start times, kills).
	Logf func(format string, args ...any)
	// Security, when set, makes the nodes' listeners use TLS and SASL (see
	// Security); nil means PLAINTEXT everywhere.
	Security *Security
}

// Security is a cluster whose clients must use TLS and authenticate with
// SASL/SCRAM-SHA-512, as a managed Kafka service requires:
//
//   - the client listener (the one Brokers lists) is SASL_SSL with
//     SCRAM-SHA-512 only; the brokers also talk to each other on it, as
//     the cluster's admin user;
//   - the controller listener is SSL with client certificates required:
//     the nodes present their certificate (principal
//     User:CN=127.0.0.1,O=ddnn development, a super user with ACLs);
//   - the keystore and truststore are PEM files (ssl.keystore.type=PEM)
//     from WriteCerts, made in the cluster's directory;
//   - the SCRAM users are created when the log directories are formatted
//     (kafka-storage format --add-scram), so they exist before any
//     broker accepts a connection.
type Security struct {
	// Users are the SCRAM-SHA-512 users besides the admin, name →
	// password. Names and passwords must not hold ',', ']', '=' or '"'
	// (the storage tool's --add-scram syntax).
	Users map[string]string
	// ACLs turns on Kafka's StandardAuthorizer: the admin user and the
	// nodes are super users, and every other user may do nothing until
	// Cluster.AllowPrefix grants it.
	ACLs bool
}

// AdminUser is the SCRAM-SHA-512 super user of a cluster with Security;
// the brokers use it between themselves, and Cluster's own clients (and
// Tool) connect as it. Its password is random per cluster (AdminPassword).
const AdminUser = "kafkatest-admin"

// Cluster is a running set of KRaft nodes.
type Cluster struct {
	cfg       Config
	libs      string
	java      string
	dir       string
	ownDir    bool
	clusterID string
	nodes     []*Node
	// cds is the class-data sharing archive of this JVM and these jars;
	// dumpCDS says node 1 records what it loads so Start can write one.
	cds     string
	dumpCDS bool
	// certs, nodePrincipal and adminPassword are the TLS files, the
	// principal of the nodes' certificate and the admin's password of a
	// cluster with Security.
	certs         Certs
	nodePrincipal string
	adminPassword string
	// StartTime is how long Start took: formatting the log directories,
	// starting the JVMs and waiting until every broker was registered.
	StartTime time.Duration
}

// Node is one KRaft node.
type Node struct {
	ID       int
	Addr     string // the client listener (PLAINTEXT, or SASL_SSL with Security), host:port
	ctrlAddr string
	dir      string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

// javaFlags keep JVM start-up short and memory small: the serial collector,
// the C1 compiler only, class-data sharing (the JDK's archive, and ours
// once written, see writeCDS).
var javaFlags = []string{
	"-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Xshare:auto", "-XX:-UsePerfData",
	"-Djava.awt.headless=true", "-Djava.net.preferIPv4Stack=true",
}

// New starts a cluster for t and stops it when t ends. It skips t, saying
// why, when this machine cannot run Apache Kafka.
func New(t testing.TB, cfg Config) *Cluster {
	t.Helper()
	if cfg.Logf == nil {
		cfg.Logf = t.Logf
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := Start(ctx, cfg)
	if errors.Is(err, ErrUnavailable) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	return c
}

// Start formats and starts a cluster and waits until every broker is
// registered. On error nothing is left running.
func Start(ctx context.Context, cfg Config) (*Cluster, error) {
	t0 := time.Now()
	if cfg.Nodes == 0 {
		cfg.Nodes = 3
	}
	if cfg.Heap == "" {
		cfg.Heap = "256m"
	}
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	java, err := findJava(cfg.Java)
	if err != nil {
		return nil, err
	}
	libs, err := Libs(cfg.Root)
	if err != nil {
		return nil, err
	}
	c := &Cluster{cfg: cfg, libs: libs, java: java, dir: cfg.Dir, clusterID: newClusterID()}
	if c.dir == "" {
		if c.dir, err = os.MkdirTemp("", "kafkatest-"); err != nil {
			return nil, fmt.Errorf("kafka cluster: %w", err)
		}
		c.ownDir = true
	}
	// All ports at once, so no two nodes get the same one.
	ports, err := freePorts(2 * cfg.Nodes)
	if err != nil {
		c.Stop()
		return nil, err
	}
	for i := range cfg.Nodes {
		c.nodes = append(c.nodes, &Node{
			ID:       i + 1,
			Addr:     net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[2*i])),
			ctrlAddr: net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[2*i+1])),
			dir:      filepath.Join(c.dir, fmt.Sprintf("node-%d", i+1)),
		})
	}
	if cfg.Security != nil {
		if err := c.writeSecurityFiles(); err != nil {
			c.Stop()
			return nil, err
		}
	}
	c.cds = c.cdsPath()
	if _, err := os.Stat(c.cds); err != nil {
		c.dumpCDS = true
	}
	if err := c.format(ctx); err != nil {
		c.Stop()
		return nil, err
	}
	formatted := time.Since(t0)
	for _, n := range c.nodes {
		if err := c.start(n); err != nil {
			c.Stop()
			return nil, err
		}
	}
	if err := c.WaitReady(ctx); err != nil {
		c.Stop()
		return nil, err
	}
	c.StartTime = time.Since(t0)
	cds := "class-data archive " + c.cds
	if c.dumpCDS {
		cds = "no class-data archive yet"
	}
	listener := "PLAINTEXT"
	if s := cfg.Security; s != nil {
		listener = fmt.Sprintf("SASL_SSL/SCRAM-SHA-512, %d users, ACLs %v", len(s.Users)+1, s.ACLs)
	}
	c.cfg.Logf("kafkatest: Apache Kafka %s, %d nodes (%s, %s) ready in %s (formatting %s), heap %s each, %s",
		Version, len(c.nodes), c.Bootstrap(), listener, c.StartTime.Round(time.Millisecond), formatted.Round(time.Millisecond), cfg.Heap, cds)
	if c.dumpCDS {
		c.writeCDS(ctx)
	}
	return c, nil
}

// Bootstrap is the comma-separated client addresses of every node
// (PLAINTEXT, or SASL_SSL with Security).
func (c *Cluster) Bootstrap() string { return strings.Join(c.Brokers(), ",") }

// Brokers are the client addresses of every node, running or not.
func (c *Cluster) Brokers() []string {
	var bs []string
	for _, n := range c.nodes {
		bs = append(bs, n.Addr)
	}
	return bs
}

// Stop SIGKILLs every node's JVM by its PID and removes the directory it
// made. The data is throwaway, so no clean shutdown is waited for.
func (c *Cluster) Stop() {
	for _, n := range c.nodes {
		n.kill()
	}
	if c.ownDir {
		os.RemoveAll(c.dir)
	}
}

// Dir is the directory holding the nodes' configuration, logs and data.
func (c *Cluster) Dir() string { return c.dir }
