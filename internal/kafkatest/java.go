package kafkatest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

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
