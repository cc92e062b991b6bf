package kafkatest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

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
