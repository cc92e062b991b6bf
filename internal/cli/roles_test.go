package cli

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ddnn-continuum/ddnn/internal/kafka"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
)

// TestRolesStop runs each single role in this process until it announces
// itself, cancels it, and expects it to return 0 promptly; goleak
// (TestMain) then checks it left nothing running.
func TestRolesStop(t *testing.T) {
	root, _ := os.Getwd() // the checkout (TestMain)
	b, err := os.ReadFile("deploy/pipeline.yaml")
	if err != nil {
		t.Fatal(err)
	}
	y := strings.ReplaceAll(string(b), "../models/", filepath.Join(root, "models")+"/")
	y += "funnel:\n  listen: 127.0.0.1:0\n  delivery_listen: 127.0.0.1:0\n  coap_listen: 127.0.0.1:0\n"
	file := filepath.Join(t.TempDir(), "p.yaml")
	if err := os.WriteFile(file, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := pipeline.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	broker, err := kafka.StartBroker("127.0.0.1:0", p.Kafka.Partitions, p.Topics(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer broker.Close()

	for _, tc := range []struct {
		name      string
		args      []string
		announced string
	}{
		{"broker", []string{"broker", "-f", file, "--listen", "127.0.0.1:0"}, "embedded Kafka broker of site local on"},
		{"funnel", []string{"funnel", "-f", file, "--brokers", broker.Addr()}, "funnel: POST http://"},
		{"connector", []string{"connector", "-f", file, "--tier", "fog", "--replicas", "http://127.0.0.1:1",
			"--brokers", broker.Addr(), "--admin", "127.0.0.1:0"}, "connector fog: admin on"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, stop := startRole(t, tc.args, tc.announced)
			if code := stop(); code != 0 {
				t.Errorf("exit %d", code)
			}
		})
	}
}

// startRole runs a role in this process until it prints announced, and
// returns its stdout and a stop that cancels it and returns its exit code
// (the test fails if it takes more than 20s). The test's end stops it too.
func startRole(t *testing.T, args []string, announced string) (*syncBuffer, func() int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var out, errb syncBuffer
	done := make(chan int, 1)
	go func() { done <- Run(ctx, append(args, "--log-level", "warn"), &out, &errb) }()
	code, stopped := 0, false
	stop := func() int {
		if stopped {
			return code
		}
		stopped = true
		cancel()
		select {
		case code = <-done:
			if code != 0 {
				t.Logf("%s exited %d:\n%s", args[0], code, errb.String())
			}
		case <-time.After(20 * time.Second):
			t.Errorf("%s did not stop within 20s", args[0])
			code = -1
		}
		return code
	}
	t.Cleanup(func() { stop() })
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(out.String(), announced) {
		select {
		case code = <-done:
			stopped = true
			t.Fatalf("%s exited %d before announcing itself:\n%s%s", args[0], code, out.String(), errb.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not announced:\n%s%s", args[0], out.String(), errb.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	return &out, stop
}
