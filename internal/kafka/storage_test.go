package kafka

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ddnn-continuum/ddnn/internal/testsupport"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestDataDirOwnerOnly: the data directory is 0700 and everything in it
// owner-only while the broker runs and after it stops, also when an older
// run left it readable; no file holds a SASL credential (no sasl.json, no
// salted password, not the superuser's name, no user's password); and
// another uid can open nothing in it.
func TestDataDirOwnerOnly(t *testing.T) {
	p, dir := secured(t, true)
	// Only the data directory's own modes may keep others out.
	for d := dir; d != filepath.Dir(os.TempDir()); d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	b := startSecured(t, p, false)
	data := b.DataDir()
	in := p.InputTopic("edge")
	if err := produceOne(client(t, p.Kafka, b), in); err != nil {
		t.Fatal(err)
	}
	checkOwnerOnly(t, data, "first run, running")
	b.Close()
	checkOwnerOnly(t, data, "first run, stopped")

	// An older release left everything world-readable, with a sasl.json.
	filepath.WalkDir(data, func(path string, d fs.DirEntry, _ error) error {
		if d.IsDir() {
			return os.Chmod(path, 0o755)
		}
		return os.Chmod(path, 0o644)
	})
	os.Remove(filepath.Join(data, saslTmpFile))
	if err := os.WriteFile(filepath.Join(data, saslFile), []byte(`{"version":1,"scram512":{"old":{"salted_pass":"c2VjcmV0"}}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	b = startSecured(t, p, false)
	if err := produceOne(client(t, p.Kafka, b), in); err != nil {
		t.Fatal(err)
	}
	checkOwnerOnly(t, data, "second run, running")
	b.Close()
	checkOwnerOnly(t, data, "second run, stopped")
}

func checkOwnerOnly(t *testing.T, data, when string) {
	t.Helper()
	var paths []string
	err := filepath.WalkDir(data, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		paths = append(paths, path)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		want := fs.FileMode(0o600)
		if d.IsDir() {
			want = 0o700 | fs.ModeDir
		}
		// Files kfake creates while running (a new partition's segment)
		// get its 0644 until the next start or stop; the directory keeps
		// them from others meanwhile.
		// Files kfake creates while running (a partition's first
		// segment, pids.log) get its 0644 until the next start or stop;
		// the 0700 directory keeps them from others meanwhile.
		rel, _ := filepath.Rel(data, path)
		created := strings.HasPrefix(rel, "partitions") || rel == "pids.log" || rel == "groups.log"
		if fi.Mode() != want && !(strings.HasSuffix(when, "running") && created) {
			t.Errorf("%s: %s has mode %v, want %v", when, path, fi.Mode(), want)
		}
		if fi.Sys().(*syscall.Stat_t).Uid != uint32(os.Geteuid()) {
			t.Errorf("%s: %s owned by uid %d", when, path, fi.Sys().(*syscall.Stat_t).Uid)
		}
		if d.Name() == saslFile {
			t.Errorf("%s: %s exists", when, path)
		}
		if d.Type().IsRegular() {
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			for _, secret := range []string{"salted_pass", "ddnn-broker-", "app-secret", "cam-secret", "scram"} {
				if bytes.Contains(b, []byte(secret)) {
					t.Errorf("%s: %s holds %q", when, path, secret)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) < 5 {
		t.Fatalf("%s: only %v in the data directory", when, paths)
	}
	if os.Geteuid() != 0 {
		t.Logf("not root: cannot read as another uid")
		return
	}
	// As nobody, try to list every directory and read every file.
	cmd := exec.Command("/bin/sh", append([]string{"-c", `for f; do if [ -d "$f" ]; then ls "$f" >/dev/null 2>&1 && echo "$f"; else cat "$f" >/dev/null 2>&1 && echo "$f"; fi; done; true`, "sh"}, paths...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("as nobody: %v", err)
	}
	if s := strings.TrimSpace(string(out)); s != "" {
		t.Errorf("%s: nobody can read:\n%s", when, s)
	}
	// The check itself works: nobody can read a 0644 file outside.
	probe := filepath.Join(filepath.Dir(data), "probe")
	os.WriteFile(probe, []byte("x"), 0o644)
	cmd = exec.Command("/bin/cat", probe)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	if out, err := cmd.Output(); err != nil || string(out) != "x" {
		t.Fatalf("nobody cannot read a world-readable file next to the data directory: %q %v", out, err)
	}
}

// TestBrokerStorageFullLogged: on a full file system the broker logs
// that its storage fails once, however many produces fail, counts every
// failed write in ddnn_broker_storage_errors_total and sets
// ddnn_broker_storage_failing; once space is freed it logs the recovery
// once, clears the gauge and takes records again.
func TestBrokerStorageFullLogged(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root")
	}
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("mount tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", mnt, err, out)
		}
	})
	var logs testsupport.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	reg := prometheus.NewRegistry()
	b, err := StartBroker("127.0.0.1:0", 1, []string{"t"}, log, DataDir(filepath.Join(mnt, "data")), BrokerMetrics(reg), storageProbeEvery(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()), kgo.RecordDeliveryTimeout(time.Second), kgo.ProducerLinger(0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	value := make([]byte, 16<<10) // incompressible, more than a page: never fits in a partly used one
	rand.Read(value)
	send := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return cl.ProduceSync(ctx, &kgo.Record{Topic: "t", Value: value}).FirstErr()
	}
	if err := send(); err != nil {
		t.Fatalf("before the disk is full: %v", err)
	}

	// Fill the file system.
	filler, err := os.Create(filepath.Join(mnt, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := filler.Write(make([]byte, 4096)); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			break
		}
	}
	filler.Close()
	for i := range 3 {
		if err := send(); err == nil {
			t.Fatalf("produce %d on a full disk succeeded", i)
		}
	}
	errorsTotal := func() float64 { return testutil.ToFloat64(b.watch.m.errors.WithLabelValues(storageSegment)) }
	if n := errorsTotal(); n < 3 {
		t.Errorf("ddnn_broker_storage_errors_total{kind=segment} = %v after 3 failed produces", n)
	}
	if v := testutil.ToFloat64(b.watch.m.failing); v != 1 {
		t.Errorf("ddnn_broker_storage_failing = %v on a full disk", v)
	}
	failing := "broker storage failing"
	if n := strings.Count(logs.String(), failing); n != 1 {
		t.Errorf("%d %q lines for %v failed writes, want 1:\n%s", n, failing, errorsTotal(), logs.String())
	}
	if !strings.Contains(logs.String(), "no space left on device") || !strings.Contains(logs.String(), "component=broker") {
		t.Errorf("the failing line lacks the cause or the component:\n%s", logs.String())
	}
	// The registry serves both metrics.
	if n, err := testutil.GatherAndCount(reg, "ddnn_broker_storage_errors_total", "ddnn_broker_storage_failing"); err != nil || n != 7 {
		t.Errorf("gathered %d series (%v), want 6 kinds and the gauge", n, err)
	}

	if err := os.Remove(filepath.Join(mnt, "filler")); err != nil {
		t.Fatal(err)
	}
	testsupport.WaitFor(t, 10*time.Second, "recovery", func() bool { return testutil.ToFloat64(b.watch.m.failing) == 0 })
	if err := send(); err != nil {
		t.Fatalf("after space was freed: %v", err)
	}
	out := logs.String()
	t.Logf("%v failed segment writes; the broker's log:\n%s", errorsTotal(), out)
	if n := strings.Count(out, "broker storage recovered"); n != 1 {
		t.Errorf("%d recovery lines, want 1:\n%s", n, out)
	}
	if n := strings.Count(out, failing); n != 1 {
		t.Errorf("%d failing lines after recovery, want 1:\n%s", n, out)
	}
}

// TestBrokerCloseQuiet: kfake's failing saves of sasl.json, which keep
// SASL users off the disk, are not reported as storage errors: a start
// and a stop with users log no warning or error and count none.
func TestBrokerCloseQuiet(t *testing.T) {
	var logs testsupport.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	dir := filepath.Join(t.TempDir(), "data")
	for range 2 { // a new directory, then a restored one
		b, err := StartBroker("127.0.0.1:0", 1, []string{"t"}, log, DataDir(dir), BrokerMetrics(prometheus.NewRegistry()),
			BrokerUsers(false, User{Mechanism: "SCRAM-SHA-512", Name: "u", Password: "pw-not-on-disk"}))
		if err != nil {
			t.Fatal(err)
		}
		m := b.watch.m
		b.Close()
		for _, k := range []string{storageSegment, storageGroupsLog, storagePIDsLog, storageState, storageLoad} {
			if n := testutil.ToFloat64(m.errors.WithLabelValues(k)); n != 0 {
				t.Errorf("%v %s storage errors", n, k)
			}
		}
	}
	if logs.String() != "" {
		t.Errorf("start and stop logged:\n%s", logs.String())
	}
	if _, err := os.Stat(filepath.Join(dir, saslFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("sasl.json: %v", err)
	}
}
