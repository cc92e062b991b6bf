package cli

import (
	"context"
	"fmt"
	"io"
	"net"
	goruntime "runtime"
	"strings"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ddnn-continuum/ddnn/inference"
	"github.com/ddnn-continuum/ddnn/internal/kafka"
	"github.com/ddnn-continuum/ddnn/internal/monolith"
	"github.com/ddnn-continuum/ddnn/internal/onnx"
)

func runMonolith(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("monolith", "monolith -f FILE [--workers N] [--admin ADDR]\n\nThe baseline: consumes the first tier's topic, runs every tier in this\nprocess with a fixed number of workers, produces results. With no brokers\nin the pipeline's kafka section it runs the embedded broker, like ddnn up.", stderr)
	rf := addRoleFlags(fs, stderr, true)
	ortLib := fs.String("ort-lib", "", "ONNX Runtime shared library (default: $"+onnx.EnvVar+" or the project's install path)")
	workers := fs.Int("workers", goruntime.NumCPU(), "batches run at once, each worker with its own session per tier")
	maxBatch := fs.Int("max-batch", 0, "samples per batch (default: the first tier's connector.max_batch)")
	admin := fs.String("admin", "", "address of /metrics, /healthz and /readyz (default: the pipeline's admin.listen)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *workers < 1 {
		return fmt.Errorf("%w: --workers must be at least 1", errUsage)
	}
	p, log, err := rf.load("monolith")
	if err != nil {
		return err
	}
	if _, err := onnx.Init(*ortLib); err != nil {
		return err
	}
	if *admin == "" {
		*admin = p.Admin.Listen
	}
	ln, err := net.Listen("tcp", *admin)
	if err != nil {
		return fmt.Errorf("monolith admin: %w", err)
	}
	defer ln.Close()
	if len(p.Kafka.Brokers) == 0 {
		b, err := kafka.StartBroker(p.Kafka.EmbeddedListen, p.Kafka.Partitions, p.Topics(), log)
		if err != nil {
			return err
		}
		defer b.Close()
		fmt.Fprintf(stdout, "embedded Kafka broker on %s (in memory: data is lost when it stops)\n", b.Addr())
	}
	reg, wrapped := newRegistry(p)
	cl, err := kgo.NewClient(append(kafka.ClientOptions(&p.Kafka, "monolith", wrapped), monolith.ClientOptions(p)...)...)
	if err != nil {
		return fmt.Errorf("monolith: kafka client: %w", err)
	}
	defer cl.Close()
	tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err = kafka.EnsureTopics(tctx, cl, &p.Kafka, p.Topics()...)
	cancel()
	if err != nil {
		return err
	}
	m, err := monolith.New(monolith.Config{
		Pipeline: p, Client: cl, Workers: *workers, MaxBatch: *maxBatch, Registerer: wrapped, Logger: log,
		Load: func(i int) (*inference.Session, error) {
			return inference.NewSession(p, i, inference.SessionOptions{IntraOpThreads: p.Tiers[i].Inference.IntraOpThreads})
		},
	})
	if err != nil {
		return err
	}
	defer m.Close()
	var ready atomic.Bool
	names := make([]string, len(p.Tiers))
	for i, t := range p.Tiers {
		names[i] = t.Name
	}
	fmt.Fprintf(stdout, "monolith: consuming %s (group %s), tiers %s in one process with %d workers, results to %s, bad records to %s; metrics on http://%s/metrics\n",
		p.InputTopic(p.Tiers[0].Name), monolith.Group(p), strings.Join(names, " → "), *workers, p.ResultsTopic(), p.DLQTopic(p.Tiers[0].Name), ln.Addr())
	ready.Store(true)
	err = withAdmin(ctx, ln, adminMux(reg, ready.Load), func(ctx context.Context) error {
		defer ready.Store(false)
		return m.Run(ctx)
	})
	log.Info("monolith stopped")
	return err
}
