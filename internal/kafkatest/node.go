package kafkatest

import (
	"context"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ddnn-continuum/ddnn/internal/socket"
)

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

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
