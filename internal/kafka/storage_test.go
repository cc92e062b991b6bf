package kafka

import (
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
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
