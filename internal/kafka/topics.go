package kafka

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ddnn-continuum/ddnn/internal/pipeline"
)

// EnsureTopics creates the topics that do not exist yet with the kafka
// section's partitions, replication factor and topic configs, and checks
// the topics that exist against them: fewer partitions, another
// replication factor (when one is configured rather than the cluster's
// default) or a listed config with another value is an error naming the
// topic, what it has and what is wanted. Every problem is reported.
func EnsureTopics(ctx context.Context, cl *kgo.Client, k *pipeline.Kafka, topics ...string) error {
	adm := kadm.NewClient(cl)
	configs := make(map[string]*string, len(k.TopicConfig))
	for key, v := range k.TopicConfig {
		configs[key] = kadm.StringPtr(v)
	}
	resp, err := adm.CreateTopics(ctx, k.Partitions, k.Replication(), configs, topics...)
	if err != nil {
		return fmt.Errorf("create topics: %w", err)
	}
	var (
		errs     []error
		existing []string
	)
	for _, t := range resp.Sorted() {
		switch {
		case t.Err == nil:
		case errors.Is(t.Err, kerr.TopicAlreadyExists):
			existing = append(existing, t.Topic)
		default:
			errs = append(errs, fmt.Errorf("create topic %q: %w%s", t.Topic, t.Err, detail(t.ErrMessage)))
		}
	}
	if len(existing) > 0 {
		errs = append(errs, checkTopics(ctx, adm, k, existing)...)
	}
	return errors.Join(errs...)
}

// checkTopics compares existing topics with the kafka section.
func checkTopics(ctx context.Context, adm *kadm.Client, k *pipeline.Kafka, topics []string) []error {
	md, err := adm.ListTopics(ctx, topics...)
	if err != nil {
		return []error{fmt.Errorf("describe topics: %w", err)}
	}
	var errs []error
	for _, name := range topics {
		t, ok := md[name]
		if !ok || t.Err != nil {
			errs = append(errs, fmt.Errorf("topic %q: describe: %v", name, t.Err))
			continue
		}
		if n := len(t.Partitions); n < int(k.Partitions) {
			errs = append(errs, fmt.Errorf("topic %q: has %d partitions, want at least %d (kafka.partitions)", name, n, k.Partitions))
		}
		if want := int(k.Replication()); want > 0 {
			for _, p := range t.Partitions.Sorted() {
				if have := len(p.Replicas); have != want {
					errs = append(errs, fmt.Errorf("topic %q: has replication factor %d (partition %d), want %d (kafka.replication_factor)", name, have, p.Partition, want))
					break
				}
			}
		}
	}
	if len(k.TopicConfig) == 0 {
		return errs
	}
	rcs, err := adm.DescribeTopicConfigs(ctx, topics...)
	if err != nil {
		return append(errs, fmt.Errorf("describe topic configs: %w", err))
	}
	slices.SortFunc(rcs, func(a, b kadm.ResourceConfig) int { return strings.Compare(a.Name, b.Name) })
	for _, rc := range rcs {
		if rc.Err != nil {
			errs = append(errs, fmt.Errorf("topic %q: describe configs: %w%s", rc.Name, rc.Err, detail(rc.ErrMessage)))
			continue
		}
		have := map[string]string{}
		for _, c := range rc.Configs {
			have[c.Key] = c.MaybeValue()
		}
		for _, key := range slices.Sorted(maps.Keys(k.TopicConfig)) {
			want := k.TopicConfig[key]
			v, ok := have[key]
			switch {
			case !ok:
				errs = append(errs, fmt.Errorf("topic %q: the broker reports no %s, want %s (kafka.topic_config)", rc.Name, key, want))
			case v != want:
				errs = append(errs, fmt.Errorf("topic %q: has %s=%s, want %s (kafka.topic_config)", rc.Name, key, v, want))
			}
		}
	}
	return errs
}

func detail(msg string) string {
	if msg == "" {
		return ""
	}
	return " (" + msg + ")"
}
