package apply

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/ddnn-continuum/ddnn/internal/command"
	"github.com/ddnn-continuum/ddnn/internal/httpapi"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/testsupport"
)

// twoSites places the edge tier on site edge and the other two on site
// cloud; the arguments are the sites' admin addresses, the edge tier's
// threshold and the models' directory.
const twoSites = `
name: t
input: {dtype: uint8, shape: [1, 28, 28], scale: 0.00392156862745098}
classes: [a, b, c, d, e, f, g, h, i, j]
sites:
  - {name: edge, kafka: {embedded_listen: 127.0.0.1:0}, funnel: {listen: 127.0.0.1:0, delivery_listen: 127.0.0.1:0, coap_listen: "off"}, admin: {listen: "%[1]s"}}
  - {name: cloud, kafka: {embedded_listen: 127.0.0.1:0}, funnel: {listen: 127.0.0.1:0, delivery_listen: 127.0.0.1:0, coap_listen: "off"}, admin: {listen: "%[2]s"}}
tiers:
  - {name: edge, site: edge, model: %[4]s/edge.onnx, exit: {output: exit_probs, threshold: %[3]s}, forward: {output: forward}}
  - {name: fog, site: cloud, model: %[4]s/fog.onnx, exit: {output: exit_probs, threshold: 0.6}, forward: {output: forward}}
  - {name: cloud, site: cloud, model: %[4]s/cloud.onnx, exit: {output: exit_probs}}
`

// admin serves a running pipeline's description at /v1/pipeline and
// counts the reads.
type admin struct {
	srv   *httptest.Server
	reads atomic.Int32
	desc  atomic.Pointer[Description]
	// old makes it answer 404, as a ddnn up that serves no pipeline.
	old atomic.Bool
}

func newAdmin(t *testing.T) *admin {
	a := &admin{}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+httpapi.PathPipeline, func(w http.ResponseWriter, _ *http.Request) {
		a.reads.Add(1)
		if a.old.Load() {
			http.NotFound(w, nil)
			return
		}
		json.NewEncoder(w).Encode(a.desc.Load())
	})
	a.srv = httptest.NewServer(mux)
	t.Cleanup(a.srv.Close)
	return a
}

func (a *admin) addr() string { return strings.TrimPrefix(a.srv.URL, "http://") }

// TestCommandSites: ddnn apply --dry-run reads every site's running
// pipeline and prints a plan per site, or only --site's; an admin address
// that serves no pipeline is named.
func TestCommandSites(t *testing.T) {
	models := filepath.Join(testsupport.Root(t), "models")
	edge, cloud := newAdmin(t), newAdmin(t)
	dir := t.TempDir()
	write := func(name, threshold string) string {
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, fmt.Appendf(nil, twoSites, edge.addr(), cloud.addr(), threshold, models), 0o644); err != nil {
			t.Fatal(err)
		}
		return f
	}
	running, err := pipeline.Load(write("running.yaml", "0.9"))
	if err != nil {
		t.Fatal(err)
	}
	d, err := Describe(running)
	if err != nil {
		t.Fatal(err)
	}
	edge.desc.Store(d)
	cloud.desc.Store(d)
	next := write("next.yaml", "0.8")
	run := func(args ...string) (string, error) {
		var out bytes.Buffer
		err := command.Main(context.Background(), &Command{}, "apply", Synopsis, args, &out, &out)
		return out.String(), err
	}

	out, err := run("-f", next, "--dry-run")
	if err != nil || strings.Count(out, "tiers[0] (edge).exit.threshold: 0.9 -> 0.8") != 2 ||
		!strings.Contains(out, "site edge (ddnn up at "+edge.addr()+")") || !strings.Contains(out, "site cloud (ddnn up at "+cloud.addr()+")") {
		t.Errorf("every site: %v\n%s", err, out)
	}
	if edge.reads.Load() != 1 || cloud.reads.Load() != 1 {
		t.Errorf("reads: edge %d, cloud %d; want 1 each", edge.reads.Load(), cloud.reads.Load())
	}
	out, err = run("-f", next, "--dry-run", "--site", "cloud")
	if err != nil || strings.Contains(out, "site edge") || !strings.Contains(out, "site cloud") || edge.reads.Load() != 1 {
		t.Errorf("--site cloud: %v, edge read %d times\n%s", err, edge.reads.Load(), out)
	}
	cloud.old.Store(true)
	if out, err = run("-f", next, "--dry-run", "--site", "cloud"); err == nil || !strings.Contains(err.Error(), "site cloud: http://"+cloud.addr()+"/v1/pipeline: 404 Not Found") {
		t.Errorf("an admin address without /v1/pipeline: %v\n%s", err, out)
	}
}
