package replicas

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ddnn-continuum/ddnn/inference"
	"github.com/ddnn-continuum/ddnn/internal/command"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/proctest"
	"github.com/ddnn-continuum/ddnn/internal/runtime/process"
	"github.com/ddnn-continuum/ddnn/internal/testsupport"
)

// replicaEnv makes the test binary play `ddnn inference` when a process
// runtime starts it (see proctest.FakeInference).
const replicaEnv = "DDNN_REPLICAS_TEST_REPLICA"

func TestMain(m *testing.M) { proctest.Main(m, replicaEnv, proctest.FakeInference) }

// TestProcessReplicaArgs starts a process replica and checks what it is
// told: the absolute pipeline file, its tier, the log level,
// the service token and the ONNX Runtime library.
func TestProcessReplicaArgs(t *testing.T) {
	p, err := pipeline.Load("../../../deploy/pipeline.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var out testsupport.Buffer
	rt, err := New(context.Background(), p, &p.Tiers[0], Options{
		File: "../../../deploy/pipeline.yaml", ServiceTokenFile: "/run/ddnn/service.token",
		ORTLib: "/opt/ort/libonnxruntime.so", Out: &out,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close(context.Background())
	if err := rt.Scale(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	proctest.WaitFor(t, "the replica's arguments", func() bool { return strings.Contains(out.String(), "replica:") })
	reps, err := rt.List(context.Background())
	if err != nil || len(reps) != 1 {
		t.Fatalf("replicas %v (%v), want one", reps, err)
	}
	file, _ := filepath.Abs("../../../deploy/pipeline.yaml")
	want := proctest.ReplicaLine(inference.Command{File: file, Tier: "edge", Listen: strings.TrimPrefix(reps[0].URL, "http://"),
		ServiceTokenFile: "/run/ddnn/service.token", ORTLib: "/opt/ort/libonnxruntime.so",
		Log: command.Log{Level: "info"}})
	if !strings.Contains(out.String(), want) {
		t.Errorf("replica output lacks %q:\n%s", want, out.String())
	}
}

func TestNew(t *testing.T) {
	p, err := pipeline.Load("../../../deploy/pipeline.yaml")
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	t.Setenv("KUBECONFIG", filepath.Join(t.TempDir(), "no-such-kubeconfig"))
	for _, tc := range []struct {
		name    string
		runtime string
		wantErr string // "" for a process runtime
	}{
		{"process", pipeline.RuntimeProcess, ""},
		{"kubernetes without a cluster config", pipeline.RuntimeKubernetes, `tier "fog": `},
		{"unknown", "lambda", `tier "fog": replicas.runtime "lambda" unknown`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tier := p.Tiers[1]
			tier.Replicas.Runtime = tc.runtime
			rt, err := New(context.Background(), p, &tier, Options{File: "../../../deploy/pipeline.yaml"})
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				defer rt.Close(context.Background())
				if _, ok := rt.(*process.Runtime); !ok {
					t.Fatalf("got a %T, want a process runtime", rt)
				}
				return
			}
			if err == nil {
				rt.Close(context.Background())
				t.Fatalf("no error, want one starting %q", tc.wantErr)
			}
			if !strings.HasPrefix(err.Error(), tc.wantErr) {
				t.Fatalf("error %q, want one starting %q", err, tc.wantErr)
			}
		})
	}
}
