package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ddnn-continuum/ddnn/internal/kafka"
	"github.com/ddnn-continuum/ddnn/internal/kafkatest"
	"github.com/ddnn-continuum/ddnn/internal/testsupport"
)

// securedPipeline writes the shipped pipeline with an embedded broker
// that requires TLS, SCRAM-SHA-512 and ACLs: the pipeline's user "app"
// (password in a file) and a device user "cam" (password in the
// environment of ddnn up). It returns the pipeline, the CA file and the
// two passwords.
func securedPipeline(t *testing.T, name string) (tp testPipeline, ca, appPW, camPW string) {
	t.Helper()
	tp = writePipeline(t, name, 1, "")
	dir := t.TempDir()
	certs, err := kafkatest.WriteCerts(dir)
	if err != nil {
		t.Fatal(err)
	}
	secret := func(who string) string {
		b := make([]byte, 12)
		rand.Read(b)
		return who + "-pw-" + hex.EncodeToString(b)
	}
	appPW, camPW = secret("app"), secret("cam")
	if err := os.WriteFile(filepath.Join(dir, "app.pw"), []byte(appPW+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DDNN_E2E_CAM_PASSWORD", camPW) // ddnn up and its children inherit it
	sec := fmt.Sprintf(`kafka:
  tls: {enabled: true, root_cas_file: %[1]s}
  sasl: [{mechanism: SCRAM-SHA-512, username: app, password_file: %[2]s}]
  embedded_tls: {cert_file: %[3]s, key_file: %[4]s}
  embedded_users:
    - {username: app, mechanism: SCRAM-SHA-512, password_file: %[2]s}
    - {username: cam, mechanism: SCRAM-SHA-512, password_env: DDNN_E2E_CAM_PASSWORD, role: device}
  embedded_acls: true
`, certs.CA, filepath.Join(dir, "app.pw"), certs.Cert, certs.Key)
	b, err := os.ReadFile(tp.file)
	if err != nil {
		t.Fatal(err)
	}
	y := strings.Replace(string(b), "kafka:\n", sec, 1)
	if err := os.WriteFile(tp.file, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	return tp, certs.CA, appPW, camPW
}

// TestSecuredKafka runs `ddnn up` on an embedded broker that requires
// TLS + SCRAM-SHA-512 + ACLs: the 2,000 test images give the results
// `ddnn models eval` gives; no password shows in any process's command
// line or in up's output; kcat without credentials is refused, and kcat
// as the device user writes a sample to the first tier's topic (and only
// there) that gets a result.
func TestSecuredKafka(t *testing.T) {
	tp, ca, appPW, camPW := securedPipeline(t, "sec")
	upProc := up(t, tp)
	p := loadPipeline(t, tp.file)
	reader, err := kafka.ClientOptions(&p.Kafka, "e2e", nil, nil)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("MatchesEval", func(t *testing.T) {
		sendTestSet(t, tp.funnel, tp.broker, tp.name+".results", tp.file, " (TLS + SCRAM-SHA-512 + ACLs)", reader...)
	})

	t.Run("NoSecretInProcessesOrOutput", func(t *testing.T) {
		ps, err := exec.Command("ps", "-eo", "args").Output()
		if err != nil {
			t.Fatal(err)
		}
		children := childPIDs(t, upProc.cmd.Process.Pid, "connector")
		if len(children) == 0 || !strings.Contains(string(ps), "--f="+tp.file) {
			t.Fatalf("ps shows no connector of ddnn up: the check would see nothing\n%s", ps)
		}
		cmdlines := string(ps)
		files, _ := filepath.Glob("/proc/[0-9]*/cmdline")
		for _, f := range files {
			b, _ := os.ReadFile(f)
			cmdlines += strings.ReplaceAll(string(b), "\x00", " ") + "\n"
		}
		for _, pw := range []string{appPW, camPW} {
			if strings.Contains(cmdlines, pw) {
				t.Errorf("a command line holds the password %s…", pw[:7])
			}
			if strings.Contains(upProc.out.String(), pw) {
				t.Errorf("ddnn up's output (announcement and logs) holds the password %s…", pw[:7])
			}
		}
		if !strings.Contains(upProc.out.String(), `"tls":true,"sasl_users":2,"acls":true`) && !strings.Contains(upProc.out.String(), "tls=true sasl_users=2 acls=true") {
			t.Errorf("up's log does not say the broker requires TLS, SASL and ACLs:\n%s", tail(upProc.out.String(), 30))
		}
		t.Logf("%d command lines checked; ddnn up's output: %d bytes", len(files), len(upProc.out.String()))
	})

	t.Run("Kcat", func(t *testing.T) {
		if _, err := exec.LookPath("kcat"); err != nil {
			t.Skip("kcat is not installed (apt-get install kcat; make deps installs it)")
		}
		in := tp.name + ".edge.in"
		sample := filepath.Join(t.TempDir(), "sample")
		if err := os.WriteFile(sample, testSet(t).Samples[0], 0o644); err != nil {
			t.Fatal(err)
		}
		tlsArgs := []string{"-X", "security.protocol=SSL", "-X", "ssl.ca.location=" + ca}
		sasl := func(user, pw string) []string {
			return []string{"-X", "security.protocol=SASL_SSL", "-X", "sasl.mechanisms=SCRAM-SHA-512",
				"-X", "sasl.username=" + user, "-X", "sasl.password=" + pw, "-X", "ssl.ca.location=" + ca}
		}
		kcat := func(args ...string) (string, error) {
			out, err := exec.Command("kcat", append([]string{"-b", tp.broker, "-m", "5", "-X", "message.timeout.ms=5000"}, args...)...).CombinedOutput()
			return string(out), err
		}
		for _, c := range []struct {
			name string
			args []string
		}{
			{"plaintext", []string{"-P", "-t", in, "-k", "kcat-plain", sample}},
			{"TLS without SASL", append(tlsArgs, "-P", "-t", in, "-k", "kcat-nosasl", sample)},
			{"wrong password", append(sasl("cam", "guess"), "-P", "-t", in, "-k", "kcat-wrong", sample)},
			{"device reads the results", append(sasl("cam", camPW), "-C", "-t", tp.name+".results", "-o", "beginning", "-e", "-q")},
			{"device writes the results", append(sasl("cam", camPW), "-P", "-t", tp.name+".results", "-k", "kcat-forged", sample)},
		} {
			out, err := kcat(c.args...)
			if err == nil {
				t.Errorf("kcat, %s: accepted\n%s", c.name, out)
				continue
			}
			t.Logf("kcat, %s: refused: %s", c.name, firstLine(out))
		}
		if out, err := kcat(append(sasl("cam", camPW), "-P", "-t", in, "-k", "kcat-sec-0", sample)...); err != nil {
			t.Fatalf("kcat as the device user: %v\n%s", err, out)
		}
		got := collectResults(t, tp.broker, tp.name+".results", "kcat-", 1, time.Minute, reader...)
		if len(got["kcat-sec-0"]) != 1 || len(got) != 1 {
			t.Errorf("results of kcat's samples: %v, want one for kcat-sec-0", got)
		}
	})

	// ddnn dlq reads and replays with the YAML's TLS and SASL settings
	// alone: no flag carries a credential.
	t.Run("DeadLetters", func(t *testing.T) {
		cl := testsupport.KafkaClient(t, append(reader, kgo.RequiredAcks(kgo.AllISRAcks()))...)
		bad := &kgo.Record{Topic: tp.name + ".edge.in", Key: []byte("sec-short"), Value: []byte("short")}
		if err := cl.ProduceSync(context.Background(), bad).FirstErr(); err != nil {
			t.Fatal(err)
		}
		dlq := func(args ...string) string {
			out, err := exec.Command(ddnn, append(append([]string{"dlq"}, args...), "-f", tp.file, "--tier", "edge")...).CombinedOutput()
			if err != nil {
				t.Fatalf("ddnn dlq %v: %v\n%s", args, err, out)
			}
			return string(out)
		}
		testsupport.WaitFor(t, 30*time.Second, "the short record dead-lettered", func() bool {
			return strings.Contains(dlq("show", "--limit", "10"), "sec-short")
		})
		if out := dlq("replay", "--dry-run"); !strings.Contains(out, "would replay 1 of 1") {
			t.Errorf("dry run on the secured broker:\n%s", out)
		}
	})
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
