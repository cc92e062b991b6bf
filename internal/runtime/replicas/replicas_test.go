package replicas

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/runtime/process"
)

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
			rt, err := New(context.Background(), p, &tier, Options{File: "../../../deploy/pipeline.yaml", FunnelURL: "http://127.0.0.1:1"})
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
