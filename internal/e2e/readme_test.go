package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ddnn-continuum/ddnn/internal/testsupport"
)

// TestReadmeRolesAlone runs the README's "each role alone" commands exactly
// as written, each as its own process, from a directory laid out like the
// checkout, and checks that an image sent to the funnel gets a result: first
// with the replicas the scaler runs, then with the replica and connector
// the README runs by hand for the edge tier. The commands use the default
// ports, so they run in a network namespace of their own, where nothing
// else can hold those ports and nothing they send leaves the namespace.
func TestReadmeRolesAlone(t *testing.T) {
	blocks := readmeBlocks(t, "roles-alone", 2)
	ns := newNetns(t)

	dir := t.TempDir()
	r := root(t)
	for _, link := range []struct{ name, to string }{{"deploy", filepath.Join(r, "deploy")}, {"models", filepath.Join(r, "models")}, {"bin/ddnn", ddnn}} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, link.name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(link.to, filepath.Join(dir, link.name)); err != nil {
			t.Fatal(err)
		}
	}

	var roles []*readmeRole
	t.Cleanup(func() {
		for i := len(roles) - 1; i >= 0; i-- {
			roles[i].stop(t)
		}
		if t.Failed() {
			for _, r := range roles {
				t.Logf("%s:\n%s", r.line, r.out.String())
			}
		}
	})
	run := func(lines []string) {
		for _, line := range lines {
			if strings.Contains(line, ">") { // bin/ddnn token > service.token
				if out, err := ns.command(dir, line).CombinedOutput(); err != nil {
					t.Fatalf("%s: %v\n%s", line, err, out)
				}
				continue
			}
			role := &readmeRole{line: line, cmd: ns.command(dir, line)}
			role.cmd.Stdout, role.cmd.Stderr = &role.out, &role.out
			if err := role.cmd.Start(); err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			roles = append(roles, role)
		}
	}

	run(blocks[0])
	id := ns.sendAndAwait(t, dir, "cam-1")
	t.Logf("with the scaler's replicas: message %s has its result", id)

	// The README's own replica and connector take the edge tier over
	// from the scaler's.
	for _, r := range roles {
		if strings.Contains(r.line, "connector") && strings.Contains(r.line, "--tier edge ") {
			r.stop(t)
		}
	}
	run(blocks[1])
	id = ns.sendAndAwait(t, dir, "cam-2")
	t.Logf("with a replica run by hand: message %s has its result", id)
	token, err := os.ReadFile(filepath.Join(dir, "service.token"))
	if err != nil {
		t.Fatal(err)
	}
	out, err := ns.command(dir, `curl -sf -H "Authorization: Bearer $(cat service.token)" http://127.0.0.1:8091/metrics`).Output()
	if err != nil || !strings.Contains(string(out), `ddnn_inference_requests_total{`) {
		t.Errorf("the replica run by hand served no request (%v):\n%s", err, out)
	}
	if bytes.Contains(out, bytes.TrimSpace(token)) {
		t.Error("the replica's metrics show the service token")
	}
}

// readmeBlocks returns the bin/ddnn commands of the n shell blocks after
// the README's <!-- marker ... --> comment, comments cut off.
func readmeBlocks(t *testing.T, marker string, n int) [][]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root(t), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "<!-- "+marker)
	if !ok {
		t.Fatalf("README.md has no <!-- %s --> marker", marker)
	}
	var blocks [][]string
	for range n {
		var block string
		if _, block, ok = strings.Cut(rest, "```sh\n"); ok {
			block, rest, ok = strings.Cut(block, "```")
		}
		if !ok {
			t.Fatalf("README.md: fewer than %d shell blocks after <!-- %s -->", n, marker)
		}
		var lines []string
		for line := range strings.Lines(block) {
			line, _, _ = strings.Cut(line, " #")
			if line = strings.TrimSpace(line); strings.HasPrefix(line, "bin/ddnn ") {
				lines = append(lines, line)
			}
		}
		blocks = append(blocks, lines)
	}
	return blocks
}

// readmeRole is one long-running command of the README.
type readmeRole struct {
	line string
	cmd  *exec.Cmd
	out  testsupport.Buffer
	done bool
}

// stop ends the role with SIGTERM, as Ctrl-C would, and kills it if it
// has not exited within 15s.
func (r *readmeRole) stop(t *testing.T) {
	if r.done {
		return
	}
	r.done = true
	r.cmd.Process.Signal(syscall.SIGTERM)
	exited := make(chan struct{})
	go func() {
		r.cmd.Wait()
		close(exited)
	}()
	select {
	case <-exited:
	case <-time.After(15 * time.Second):
		t.Errorf("%s: still running 15s after SIGTERM; killed", r.line)
		r.cmd.Process.Kill()
		<-exited
	}
}

// netns is a network namespace of the test's own, with its loopback up,
// held by a sleeping process.
type netns struct{ path string }

func newNetns(t *testing.T) netns {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for a network namespace of its own (unshare -n)")
	}
	for _, tool := range []string{"unshare", "nsenter", "ip", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed: %v", tool, err)
		}
	}
	holder := exec.Command("unshare", "-n", "sleep", "600")
	if err := holder.Start(); err != nil {
		t.Skipf("unshare -n: %v", err)
	}
	t.Cleanup(func() {
		holder.Process.Kill()
		holder.Wait()
	})
	ns := netns{path: filepath.Join("/proc", strconv.Itoa(holder.Process.Pid), "ns", "net")}
	own, _ := os.Readlink("/proc/self/ns/net")
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if got, err := os.Readlink(ns.path); err == nil && got != own {
			break
		}
		if time.Now().After(deadline) {
			t.Skip("unshare -n made no network namespace within 5s")
		}
	}
	if out, err := ns.command("/", "ip link set lo up").CombinedOutput(); err != nil {
		t.Fatalf("ip link set lo up: %v\n%s", err, out)
	}
	return ns
}

// command runs a shell line in the namespace, from dir.
func (ns netns) command(dir, line string) *exec.Cmd {
	cmd := exec.Command("nsenter", "--net="+ns.path, "bash", "-c", line)
	cmd.Dir = dir
	return cmd
}

// sendAndAwait sends the README's sample image as device over HTTP once
// the funnel is ready, and waits until its result can be read with ddnn
// results. It returns the message id.
func (ns netns) sendAndAwait(t *testing.T, dir, device string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var id string
	for id == "" {
		out, err := ns.command(dir, "curl -sf -H 'Content-Type: application/octet-stream' -H 'X-Device-Id: "+device+"' "+
			"--data-binary @deploy/examples/sneaker.u8 http://127.0.0.1:8080/v1/ingest").Output()
		var accepted struct{ ID string }
		if err == nil && json.Unmarshal(out, &accepted) == nil {
			id = accepted.ID
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the funnel accepted nothing within 90s (%v): %s", err, out)
		case <-time.After(200 * time.Millisecond):
		}
	}
	for {
		out, _ := ns.command(dir, "bin/ddnn results -f deploy/pipeline.yaml --id "+id+" --count 1 --timeout 5s --json").Output()
		if bytes.Contains(out, []byte(`"id":"`+id+`"`)) {
			if !bytes.Contains(out, []byte(`"device":"`+device+`"`)) {
				t.Errorf("result of %s: %s, want device %s", id, out, device)
			}
			return id
		}
		select {
		case <-ctx.Done():
			t.Fatalf("message %s accepted, but no result within 90s", id)
		case <-time.After(500 * time.Millisecond):
		}
	}
}
