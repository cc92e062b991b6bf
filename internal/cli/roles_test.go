package cli

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ddnn-continuum/ddnn/internal/kafka"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/proctest"
	"github.com/ddnn-continuum/ddnn/internal/testsupport"
	"github.com/ddnn-continuum/ddnn/internal/wire"
)

// TestRolesStop runs each single role in this process until it announces
// itself, cancels it, and expects it to return 0 promptly; goleak
// (TestMain) then checks it left nothing running.
func TestRolesStop(t *testing.T) {
	file, broker := rolesPipeline(t, "funnel:\n  listen: 127.0.0.1:0\n  delivery_listen: 127.0.0.1:0\n  coap_listen: 127.0.0.1:0\n")

	for _, tc := range []struct {
		name      string
		args      []string
		announced string
	}{
		{"broker", []string{"broker", "-f", file, "--listen", "127.0.0.1:0"}, "embedded Kafka broker of site local on"},
		{"funnel", []string{"funnel", "-f", file, "--brokers", broker}, "funnel: POST http://"},
		{"connector", []string{"connector", "-f", file, "--tier", "fog", "--replicas", "http://127.0.0.1:1",
			"--brokers", broker, "--admin", "127.0.0.1:0"}, "connector fog: admin on"},
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
func startRole(t *testing.T, args []string, announced string) (*testsupport.Buffer, func() int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var out, errb testsupport.Buffer
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

// TestBrokerRepair: `ddnn broker` refuses a data directory with a flipped
// byte, naming the file; `ddnn broker repair` drops the damaged batch and
// names the messages it held by their ids; a second repair finds nothing.
func TestBrokerRepair(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "p.yaml")
	y := `name: rep
input: {dtype: uint8, shape: [2]}
classes: [a, b]
tiers:
  - {name: edge, model: m.onnx, exit: {output: o}}
kafka: {partitions: 1, embedded_data_dir: data}
`
	if err := os.WriteFile(file, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := pipeline.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	b, err := kafka.StartSiteBroker(p, &p.Sites()[0], "127.0.0.1:0", false, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Uncompressed, so that the flipped byte below spoils one record only
	// (in a compressed batch it may spoil the whole stream).
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()), kgo.ProducerBatchCompression(kgo.NoCompression()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	topic := p.InputTopic("edge")
	for batch := range 2 {
		var rs []*kgo.Record
		for i := range 5 {
			id := fmt.Sprintf("msg-%d-%d", batch, i)
			rs = append(rs, &kgo.Record{Topic: topic, Value: []byte("v"), Headers: []kgo.RecordHeader{{Key: wire.HeaderID, Value: []byte(id)}}})
		}
		if err := cl.ProduceSync(ctx, rs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	cl.Close()
	b.Close()
	seg := filepath.Join(b.DataDir(), "partitions", topic+"-0", "0.dat")
	raw, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	raw[len(raw)/2-5] ^= 0x01 // in the first batch's last record
	os.WriteFile(seg, raw, 0o600)

	var out, errb testsupport.Buffer
	if code := Run(ctx, []string{"broker", "-f", file, "--listen", "127.0.0.1:0"}, &out, &errb); code == 0 ||
		!strings.Contains(errb.String(), "partitions/"+topic+"-0/0.dat: bytes 0-") || !strings.Contains(errb.String(), "ddnn broker repair") {
		t.Fatalf("broker on a damaged directory: exit %d\n%s", code, errb.String())
	}
	var rout, rerr testsupport.Buffer
	if code := Run(ctx, []string{"broker", "repair", "-f", file}, &rout, &rerr); code != 0 {
		t.Fatalf("repair: exit %d\n%s", code, rerr.String())
	}
	t.Logf("ddnn broker repair:\n%s", rout.String())
	for _, want := range []string{"dropped partitions/" + topic + "-0/0.dat: bytes 0-", "offsets 0-4", `id "msg-0-`, "lost: 5 records of " + topic + "-0 (offsets 0-4); no group had committed"} {
		if !strings.Contains(rout.String(), want) {
			t.Errorf("repair output lacks %q:\n%s", want, rout.String())
		}
	}
	var aout, aerr testsupport.Buffer
	if code := Run(ctx, []string{"broker", "repair", "-f", file}, &aout, &aerr); code != 0 || !strings.Contains(aout.String(), "nothing damaged, nothing changed") {
		t.Errorf("second repair: exit %d\n%s%s", code, aout.String(), aerr.String())
	}
}

// TestConnectorReadiness: a connector's /readyz answers 503 until its
// consumer joined the group: not while its Kafka does not answer, and 200
// once it joined on a broker that does.
func TestConnectorReadiness(t *testing.T) {
	file, broker := rolesPipeline(t, "")
	readyz := func(admin string) int {
		resp, err := http.Get("http://" + admin + "/readyz")
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, tc := range []struct {
		name, brokers string
		want          int
	}{
		{"kafka unreachable", proctest.FreeAddr(t), http.StatusServiceUnavailable},
		{"joined", broker, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			admin := proctest.FreeAddr(t)
			startRole(t, []string{"connector", "-f", file, "--tier", "fog", "--replicas", "http://127.0.0.1:1",
				"--brokers", tc.brokers, "--admin", admin}, "connector fog: admin on")
			deadline := time.Now().Add(3 * time.Second)
			if tc.want == http.StatusOK {
				deadline = time.Now().Add(15 * time.Second)
			}
			code := readyz(admin)
			for ; time.Now().Before(deadline); code = readyz(admin) {
				if code == http.StatusOK {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			if code != tc.want {
				t.Errorf("/readyz %d, want %d", code, tc.want)
			}
		})
	}
}

// rolesPipeline writes the sample pipeline, its models found from any
// directory and extra appended to it, and starts a broker with its topics
// for the test; it returns the file and the broker's address.
func rolesPipeline(t *testing.T, extra string) (string, string) {
	t.Helper()
	return testsupport.SamplePipeline(t, extra)
}
