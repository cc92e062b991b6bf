package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ddnn-continuum/ddnn/internal/testsupport"
)

// TestDockerRuntimeScales runs the burst pipeline with the edge tier's
// replicas as containers of the ddnn image on a real Docker engine: load
// scales the tier 1→3→1, every result arrives, and no container is left
// after `ddnn up` stops. make test runs it under scripts/with-dockerd.sh,
// which starts a private dockerd and builds the image.
func TestDockerRuntimeScales(t *testing.T) {
	if os.Getenv("DOCKER_HOST") == "" {
		t.Skip("DOCKER_HOST not set: run under scripts/with-dockerd.sh (make test does) to get a Docker engine and the ddnn image")
	}
	tp := burstPipeline(t, "dock", func(y string) string {
		y = strings.Replace(y, "replicas: {min: 1, max: 6}", "replicas: {min: 1, max: 3, runtime: docker, resources: {cpus: 1, memory_mb: 256}}", 1)
		return strings.Replace(y, "stabilization_window: 10s", "stabilization_window: 5s", 1)
	})
	containers := func() []string {
		out, err := exec.Command("docker", "ps", "-a", "-q", "--filter", "label=ddnn.pipeline="+tp.name).Output()
		if err != nil {
			t.Fatalf("docker ps: %v", err)
		}
		return strings.Fields(string(out))
	}
	// A container left by a crashed run, with the runtime's labels.
	if out, err := exec.Command("docker", "create", "--label", "ddnn.managed=true", "--label", "ddnn.pipeline="+tp.name,
		"--label", "ddnn.tier=edge", "ddnn:latest", "version").CombinedOutput(); err != nil {
		t.Fatalf("docker create: %v: %s", err, out)
	}
	p := up(t, tp)
	if n := len(containers()); n != 1 {
		t.Fatalf("%d edge containers at the start, want 1 (the leftover removed, one started)", n)
	}
	// Limits from the YAML reach the container.
	out, err := exec.Command("docker", "inspect", "-f", "{{.HostConfig.NanoCpus}} {{.HostConfig.Memory}} {{.HostConfig.NetworkMode}} {{.HostConfig.ReadonlyRootfs}} {{.Config.User}}", containers()[0]).Output()
	if err != nil || strings.TrimSpace(string(out)) != "1000000000 268435456 host true 65534:65534" {
		t.Errorf("container settings %q (%v)", out, err)
	}

	var (
		mu   sync.Mutex
		peak int
	)
	stop := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for {
			n := len(containers())
			mu.Lock()
			peak = max(peak, n)
			mu.Unlock()
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	out, err = exec.Command(ddnn, "bench", "-f", tp.file, "--attach", "--workload", "constant", "--rate", "800", "--duration", "2500ms", "--devices", "8", "--json", "--drain", "90s").Output()
	if err != nil {
		t.Fatalf("bench: %v", err)
	}
	var rep benchSummary
	if err := json.Unmarshal(out, &rep); err != nil || rep.Results != rep.Sent || rep.Lost != 0 {
		t.Errorf("bench: %s (%v)", out, err)
	}
	testsupport.WaitFor(t, 60*time.Second, "back to one container", func() bool { return len(containers()) == 1 })
	close(stop)
	<-watched
	if peak != 3 {
		t.Errorf("peak %d containers, want 3", peak)
	}
	p.term(t)
	if left := containers(); len(left) != 0 {
		t.Errorf("containers left after ddnn up stopped: %v", left)
	}
	t.Logf("peak %d containers; %d results; none left after shutdown", peak, rep.Results)
}
