package inference

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ddnn-continuum/ddnn/internal/command"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/testsupport"
	"github.com/ddnn-continuum/ddnn/internal/wire"
)

// exits is the exit flag of each of msgs' decisions by f.
func exits(t *testing.T, f *Function, sess *Session, msgs []wire.Message) []bool {
	t.Helper()
	ds, rej, err := f.Infer(sess, msgs)
	if err != nil || len(rej) > 0 {
		t.Fatalf("infer: %v, rejected %v", err, rej)
	}
	out := make([]bool, len(ds))
	for i, d := range ds {
		out[i] = d.Exit
	}
	return out
}

// TestReloadOnSIGHUPChangesExitThreshold rewrites the edge threshold
// of a running function's file and sends SIGHUP: the same samples'
// decisions become those of a function started on the new file, within
// 2 s, and the change and the ignored inference setting are logged.
// A file that then fails to load changes nothing.
func TestReloadOnSIGHUPChangesExitThreshold(t *testing.T) {
	y := testsupport.Shipped(t, "deploy/pipeline.yaml")
	file := filepath.Join(t.TempDir(), "p.yaml")
	write := func(y string) {
		t.Helper()
		if err := os.WriteFile(file, []byte(y), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(y)
	p, err := pipeline.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	var logs testsupport.Buffer
	f, err := New(Config{Pipeline: p, Tier: "edge", Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	sess := openSession(t, p, "edge")
	msgs := imageMessages(t, 64)
	before := exits(t, f, sess, msgs)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	role := command.Role{File: file}
	defer command.Reloader{Load: role.LoadPipeline, Apply: f.Reload, Log: f.log}.OnSIGHUP(ctx)()

	lowered := strings.Replace(y, "threshold: 0.9", "threshold: 0.5", 1)
	lowered = strings.Replace(lowered, "intra_op_threads: 1", "intra_op_threads: 2", 1)
	write(lowered)
	pNew, err := pipeline.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	fNew, err := New(Config{Pipeline: pNew, Tier: "edge"})
	if err != nil {
		t.Fatal(err)
	}
	want := exits(t, fNew, sess, msgs)
	if reflect.DeepEqual(before, want) {
		t.Fatal("threshold 0.5 decides these samples as 0.9 does: the test cannot tell a reload")
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	testsupport.WaitFor(t, 2*time.Second, "the new threshold's decisions", func() bool {
		return reflect.DeepEqual(exits(t, f, sess, msgs), want)
	})
	for _, line := range []string{
		`msg="reload: applied" setting=exit.threshold old=0.9 new=0.5`,
		`setting=inference.intra_op_threads old=1 new=2`,
	} {
		if !strings.Contains(logs.String(), line) {
			t.Errorf("logs lack %q:\n%s", line, logs.String())
		}
	}

	// A file that does not load is logged and changes nothing.
	write(strings.Replace(lowered, "threshold: 0.5", "threshold: 1.5", 1))
	if err := (command.Reloader{Load: role.LoadPipeline, Apply: f.Reload, Log: f.log}).Reload(); err == nil {
		t.Fatal("reload of a threshold 1.5 succeeded")
	}
	if !strings.Contains(logs.String(), `msg="reload: nothing changed"`) || !strings.Contains(logs.String(), "threshold") {
		t.Errorf("the failed reload is not logged with its error:\n%s", logs.String())
	}
	if got := exits(t, f, sess, msgs); !reflect.DeepEqual(got, want) {
		t.Error("a file that failed to load changed the decisions")
	}
}
