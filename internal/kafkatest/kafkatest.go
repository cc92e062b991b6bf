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
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ddnn-continuum/ddnn/internal/socket"
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

// cdsPath names the class-data sharing archive for this JVM and these jars,
// kept beside the jars.
func (c *Cluster) cdsPath() string {
	out, _ := exec.Command(c.java, "-version").CombinedOutput()
	h := sha256.Sum256(append([]byte(c.java+"\n"+c.libs+"\n"), out...))
	return filepath.Join(filepath.Dir(c.libs), "cds", fmt.Sprintf("%x.jsa", h[:8]))
}

// writeCDS dumps the classes node 1 loaded into the archive later starts
// map instead of loading and verifying them again (about a second less per
// JVM). It needs jcmd; without it, or when the dump fails, JVMs start
// without an archive.
func (c *Cluster) writeCDS(ctx context.Context) {
	jcmd := filepath.Join(filepath.Dir(c.java), "jcmd")
	if _, err := os.Stat(jcmd); err != nil {
		c.cfg.Logf("kafkatest: no jcmd beside %s: JVMs start without a class-data archive", c.java)
		return
	}
	t0 := time.Now()
	if err := os.MkdirAll(filepath.Dir(c.cds), 0o755); err != nil {
		c.cfg.Logf("kafkatest: class-data archive: %v", err)
		return
	}
	tmp := fmt.Sprintf("%s.%d.tmp", c.cds, os.Getpid())
	out, err := exec.CommandContext(ctx, jcmd, strconv.Itoa(c.nodes[0].PID()), "VM.cds", "dynamic_dump", tmp).CombinedOutput()
	if err == nil {
		_, err = os.Stat(tmp)
	}
	if err != nil {
		os.Remove(tmp)
		c.cfg.Logf("kafkatest: class-data archive not written: %v: %s", err, out)
		return
	}
	if err := os.Rename(tmp, c.cds); err != nil {
		c.cfg.Logf("kafkatest: class-data archive: %v", err)
		return
	}
	c.dumpCDS = false
	c.cfg.Logf("kafkatest: wrote class-data archive %s in %s; later JVMs start faster", c.cds, time.Since(t0).Round(time.Millisecond))
}

// Libs is the directory holding the Kafka jars: $KAFKA_LIBS, else
// <root>/.deps/kafka/<Version>/libs. The error wraps ErrUnavailable when
// the jars are not there.
func Libs(root string) (string, error) {
	dir := os.Getenv("KAFKA_LIBS")
	if dir == "" {
		dir = filepath.Join(root, ".deps", "kafka", Version, "libs")
	}
	jars, _ := filepath.Glob(filepath.Join(dir, "kafka_2.13-*.jar"))
	tools, _ := filepath.Glob(filepath.Join(dir, "kafka-tools-*.jar"))
	if len(jars) == 0 || len(tools) == 0 {
		return "", fmt.Errorf("%w: no Kafka %s jars in %s (make kafka-deps fetches them; it needs Java 17+ and Maven Central)", ErrUnavailable, Version, dir)
	}
	return filepath.Abs(dir)
}

var javaVersionRE = regexp.MustCompile(`version "(\d+)`)

// findJava returns the java binary to use, checking it is Java 17 or newer.
func findJava(java string) (string, error) {
	if java == "" {
		java = os.Getenv("JAVA")
	}
	if java == "" {
		java = "java"
	}
	path, err := exec.LookPath(java)
	if err != nil {
		return "", fmt.Errorf("%w: %s not found (apt-get install openjdk-17-jre-headless)", ErrUnavailable, java)
	}
	out, err := exec.Command(path, "-version").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%w: %s -version: %v: %s", ErrUnavailable, path, err, out)
	}
	m := javaVersionRE.FindSubmatch(out)
	if m == nil {
		return "", fmt.Errorf("%w: %s -version printed no version: %s", ErrUnavailable, path, out)
	}
	if v, _ := strconv.Atoi(string(m[1])); v < 17 {
		return "", fmt.Errorf("%w: Kafka %s needs Java 17 or newer, %s is %d", ErrUnavailable, Version, path, v)
	}
	return path, nil
}

// formatArgs are StorageTool's arguments to format a node's log dir. Each
// value is joined to its flag: a cluster id is URL-safe base64 and starts
// with '-' one time in 64, which the tool's parser would read as a flag.
func formatArgs(clusterID, config string) []string {
	return []string{"format", "--cluster-id=" + clusterID, "--config=" + config}
}

func newClusterID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// freePorts are n ports for the brokers' listeners (socket.FreePort).
func freePorts(n int) ([]int, error) {
	ports := make([]int, n)
	for i := range ports {
		var err error
		if ports[i], err = socket.FreePort(); err != nil {
			return nil, err
		}
	}
	return ports, nil
}

// props is node n's server.properties.
func (c *Cluster) props(n *Node) map[string]string {
	var voters []string
	for _, o := range c.nodes {
		voters = append(voters, fmt.Sprintf("%d@%s", o.ID, o.ctrlAddr))
	}
	rf := strconv.Itoa(min(3, len(c.nodes)))
	p := map[string]string{
		"process.roles":                    "broker,controller",
		"node.id":                          strconv.Itoa(n.ID),
		"controller.quorum.voters":         strings.Join(voters, ","),
		"listeners":                        "PLAINTEXT://" + n.Addr + ",CONTROLLER://" + n.ctrlAddr,
		"advertised.listeners":             "PLAINTEXT://" + n.Addr,
		"controller.listener.names":        "CONTROLLER",
		"inter.broker.listener.name":       "PLAINTEXT",
		"listener.security.protocol.map":   "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
		"log.dirs":                         filepath.Join(n.dir, "data"),
		"auto.create.topics.enable":        "false",
		"offsets.topic.replication.factor": rf,
		// Fewer offsets partitions than the default 50: created faster.
		"offsets.topic.num.partitions":             "6",
		"transaction.state.log.replication.factor": rf,
		"transaction.state.log.min.isr":            strconv.Itoa(min(2, len(c.nodes))),
		"group.initial.rebalance.delay.ms":         "0",
		// A killed node is fenced (and leaves every ISR) after 4 s
		// rather than 9 s.
		"broker.session.timeout.ms":    "4000",
		"broker.heartbeat.interval.ms": "500",
		"num.network.threads":          "2",
		"num.io.threads":               "2",
		"background.threads":           "2",
		"log.cleaner.threads":          "1",
	}
	if c.cfg.Security != nil {
		maps.Copy(p, c.securityProps(n))
	}
	maps.Copy(p, c.cfg.BrokerProps)
	return p
}

func (c *Cluster) writeNodeFiles(n *Node) error {
	if err := os.MkdirAll(filepath.Join(n.dir, "data"), 0o755); err != nil {
		return fmt.Errorf("kafka node %d: %w", n.ID, err)
	}
	p := c.props(n)
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(p)) {
		fmt.Fprintf(&b, "%s=%s\n", k, p[k])
	}
	if err := os.WriteFile(filepath.Join(n.dir, "server.properties"), []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("kafka node %d: %w", n.ID, err)
	}
	log4j := "status = error\n" +
		"appender.file.type = File\nappender.file.name = file\n" +
		"appender.file.fileName = " + filepath.Join(n.dir, "server.log") + "\n" +
		"appender.file.layout.type = PatternLayout\nappender.file.layout.pattern = [%d] %p %m (%c)%n\n" +
		"rootLogger.level = info\nrootLogger.appenderRef.file.ref = file\n"
	if err := os.WriteFile(filepath.Join(n.dir, "log4j2.properties"), []byte(log4j), 0o644); err != nil {
		return fmt.Errorf("kafka node %d: %w", n.ID, err)
	}
	return nil
}

// format writes every node's files and formats its log directory with
// Kafka's storage tool, the nodes in parallel.
func (c *Cluster) format(ctx context.Context) error {
	errs := make([]error, len(c.nodes))
	var wg sync.WaitGroup
	for i, n := range c.nodes {
		if err := c.writeNodeFiles(n); err != nil {
			return err
		}
		args := append(formatArgs(c.clusterID, filepath.Join(n.dir, "server.properties")), c.scramArgs()...)
		wg.Go(func() {
			out, err := c.runJava(ctx, "128m", "kafka.tools.StorageTool", args...)
			if err != nil {
				errs[i] = fmt.Errorf("kafka node %d: format log dir: %w: %s", n.ID, err, tail(string(out), 10))
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// javaArgs are the arguments of a JVM running main from the cluster's jars
// with its log4j2 configuration (none: log4j's default, errors only), and
// the class-data archive once there is one.
func (c *Cluster) javaArgs(heap, log4j, main string, args ...string) []string {
	a := append([]string{"-Xmx" + heap}, javaFlags...)
	if !c.dumpCDS {
		a = append(a, "-XX:SharedArchiveFile="+c.cds)
	}
	if log4j != "" {
		a = append(a, "-Dlog4j2.configurationFile="+log4j)
	}
	a = append(a, "-cp", filepath.Join(c.libs, "*"), main)
	return append(a, args...)
}

// runJava runs a Kafka main class from the cluster's jars to completion.
func (c *Cluster) runJava(ctx context.Context, heap, main string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, c.java, c.javaArgs(heap, "", main, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd.CombinedOutput()
}

// Tool runs one of Kafka's command-line tools (its main class, e.g.
// org.apache.kafka.tools.consumer.group.ConsumerGroupCommand) from the
// cluster's jars with --bootstrap-server set, and returns its output.
//
// With Security it also passes --command-config with the admin's
// client properties (SASL_SSL, SCRAM-SHA-512, the PEM truststore), so
// the tool must take that flag (kafka-consumer-groups, kafka-topics,
// kafka-acls and kafka-configs do).
func (c *Cluster) Tool(ctx context.Context, main string, args ...string) ([]byte, error) {
	pre := []string{"--bootstrap-server", c.Bootstrap()}
	if c.cfg.Security != nil {
		pre = append(pre, "--command-config", c.AdminProperties())
	}
	out, err := c.runJava(ctx, "128m", main, append(pre, args...)...)
	if err != nil {
		return out, fmt.Errorf("%s %s: %w: %s", main, strings.Join(args, " "), err, tail(string(out), 10))
	}
	return out, nil
}

// start launches node n's JVM; it does not wait for it to be ready.
func (c *Cluster) start(n *Node) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd != nil {
		return fmt.Errorf("kafka node %d: already running (pid %d)", n.ID, n.cmd.Process.Pid)
	}
	out, err := os.OpenFile(filepath.Join(n.dir, "stdout.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("kafka node %d: %w", n.ID, err)
	}
	defer out.Close()
	args := c.javaArgs(c.cfg.Heap, filepath.Join(n.dir, "log4j2.properties"), "kafka.Kafka", filepath.Join(n.dir, "server.properties"))
	if c.dumpCDS && n.ID == 1 {
		args = slices.Insert(args, 0, "-XX:+RecordDynamicDumpInfo")
	}
	cmd := exec.Command(c.java, args...)
	cmd.Stdout, cmd.Stderr = out, out
	// The JVM dies with the test binary even if the test never gets to
	// its cleanup (a panic, a timeout).
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("kafka node %d: %w", n.ID, err)
	}
	n.cmd, n.exited = cmd, make(chan struct{})
	go func(exited chan struct{}) {
		cmd.Wait()
		close(exited)
	}(n.exited)
	return nil
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

// Node returns the node with the given id (1-based).
func (c *Cluster) Node(id int) (*Node, error) {
	if id < 1 || id > len(c.nodes) {
		return nil, fmt.Errorf("kafka cluster has no node %d (nodes 1 to %d)", id, len(c.nodes))
	}
	return c.nodes[id-1], nil
}

// PID is the process id of the node's JVM, 0 when it is not running.
func (n *Node) PID() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil {
		return 0
	}
	return n.cmd.Process.Pid
}

// Log is the tail of the node's server.log, for failure reports.
func (n *Node) Log(lines int) string {
	b, _ := os.ReadFile(filepath.Join(n.dir, "server.log"))
	return tail(string(b), lines)
}

// kill SIGKILLs the node's JVM and waits until it is gone.
func (n *Node) kill() {
	n.mu.Lock()
	cmd, exited := n.cmd, n.exited
	n.cmd = nil
	n.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGKILL)
	<-exited
}

// Kill SIGKILLs node id's JVM (no clean shutdown) and waits until it has
// exited. Its log directory stays for Restart.
func (c *Cluster) Kill(id int) error {
	n, err := c.Node(id)
	if err != nil {
		return err
	}
	pid := n.PID()
	if pid == 0 {
		return fmt.Errorf("kafka node %d is not running", id)
	}
	n.kill()
	c.cfg.Logf("kafkatest: SIGKILLed node %d (pid %d)", id, pid)
	return nil
}

// Restart starts node id again on its ports and log directory and waits
// until every node is registered with the controllers.
func (c *Cluster) Restart(ctx context.Context, id int) error {
	n, err := c.Node(id)
	if err != nil {
		return err
	}
	t0 := time.Now()
	if err := c.start(n); err != nil {
		return err
	}
	if err := c.WaitReady(ctx); err != nil {
		return err
	}
	c.cfg.Logf("kafkatest: node %d (pid %d) restarted and registered in %s", id, n.PID(), time.Since(t0).Round(time.Millisecond))
	return nil
}

// client is a short-lived admin client over the running nodes.
func (c *Cluster) client() (*kadm.Client, func(), error) {
	var seeds []string
	for _, n := range c.nodes {
		if n.PID() != 0 {
			seeds = append(seeds, n.Addr)
		}
	}
	if len(seeds) == 0 {
		return nil, nil, errors.New("kafka cluster: no node is running")
	}
	opts := []kgo.Opt{kgo.SeedBrokers(seeds...), kgo.DialTimeout(time.Second), kgo.RequestTimeoutOverhead(2 * time.Second)}
	if c.cfg.Security != nil {
		sec, err := c.AdminOpts()
		if err != nil {
			return nil, nil, err
		}
		opts = append(opts, sec...)
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("kafka cluster: client: %w", err)
	}
	return kadm.NewClient(cl), cl.Close, nil
}

// WaitReady waits until every running node is an unfenced broker in the
// cluster's metadata. It fails early, with the node's log, when a JVM
// exits.
func (c *Cluster) WaitReady(ctx context.Context) error {
	want := map[int32]bool{}
	for _, n := range c.nodes {
		if n.PID() != 0 {
			want[int32(n.ID)] = true
		}
	}
	return retry(ctx, 100*time.Millisecond, "kafka cluster not ready", func() error {
		if err := c.exitedNode(); err != nil {
			return stopRetry{err}
		}
		return c.registered(ctx, want)
	})
}

// exitedNode says which started node's JVM has exited, with its log; nil
// when none has.
func (c *Cluster) exitedNode() error {
	for _, n := range c.nodes {
		n.mu.Lock()
		exited := n.exited
		running := n.cmd != nil
		n.mu.Unlock()
		if !running {
			continue
		}
		select {
		case <-exited:
			return fmt.Errorf("kafka node %d exited while starting:\n%s\n%s", n.ID, n.Log(30), tail(readFile(filepath.Join(n.dir, "stdout.log")), 10))
		default:
		}
	}
	return nil
}

// stopRetry, returned by a retry check, ends the retries with its error.
type stopRetry struct{ err error }

func (s stopRetry) Error() string { return s.err.Error() }

// retry calls check every interval until it returns nil or a stopRetry.
// When ctx ends first, the error says what was awaited and check's last
// error.
func retry(ctx context.Context, interval time.Duration, what string, check func() error) error {
	for {
		last := check()
		if last == nil {
			return nil
		}
		if s, ok := last.(stopRetry); ok {
			return s.err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w (last: %v)", what, ctx.Err(), last)
		case <-time.After(interval):
		}
	}
}

// registered checks that the metadata lists exactly the wanted brokers.
func (c *Cluster) registered(ctx context.Context, want map[int32]bool) error {
	adm, done, err := c.client()
	if err != nil {
		return err
	}
	defer done()
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	bs, err := adm.ListBrokers(ctx)
	if err != nil {
		return err
	}
	have := map[int32]bool{}
	for _, b := range bs {
		have[b.NodeID] = true
	}
	for id := range want {
		if !have[id] {
			return fmt.Errorf("node %d not registered yet (brokers %v)", id, slices.Sorted(maps.Keys(have)))
		}
	}
	return nil
}

// Leader is the id of the node leading topic's partition.
func (c *Cluster) Leader(ctx context.Context, topic string, partition int32) (int, error) {
	adm, done, err := c.client()
	if err != nil {
		return 0, err
	}
	defer done()
	md, err := adm.Metadata(ctx, topic)
	if err != nil {
		return 0, fmt.Errorf("metadata of %s: %w", topic, err)
	}
	td, ok := md.Topics[topic]
	if !ok || td.Err != nil {
		return 0, fmt.Errorf("topic %s: not found (%v)", topic, td.Err)
	}
	pd, ok := td.Partitions[partition]
	if !ok {
		return 0, fmt.Errorf("topic %s has no partition %d", topic, partition)
	}
	if pd.Leader < 0 {
		return 0, fmt.Errorf("%s[%d] has no leader", topic, partition)
	}
	return int(pd.Leader), nil
}

// WaitInSync waits until every partition of topics has all its replicas in
// sync (after a restarted node caught up).
func (c *Cluster) WaitInSync(ctx context.Context, topics ...string) error {
	return retry(ctx, 200*time.Millisecond, "kafka cluster: replicas not in sync", func() error {
		return c.inSync(ctx, topics)
	})
}

func (c *Cluster) inSync(ctx context.Context, topics []string) error {
	adm, done, err := c.client()
	if err != nil {
		return err
	}
	defer done()
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	md, err := adm.Metadata(ctx, topics...)
	if err != nil {
		return err
	}
	for _, t := range md.Topics.Sorted() {
		if t.Err != nil {
			return fmt.Errorf("topic %s: %w", t.Topic, t.Err)
		}
		for _, p := range t.Partitions.Sorted() {
			if len(p.ISR) < len(p.Replicas) {
				return fmt.Errorf("%s[%d]: in sync %v of replicas %v", t.Topic, p.Partition, p.ISR, p.Replicas)
			}
		}
	}
	return nil
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

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
