package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ddnn-continuum/ddnn/internal/auth"
	"github.com/ddnn-continuum/ddnn/internal/kafka"
	"github.com/ddnn-continuum/ddnn/internal/wire"
)

// TestKafkaDeviceClaims runs the probe of a device user that claims
// another device: on an embedded broker with TLS, SCRAM and ACLs and with
// device authentication, the device user "cam" writes with kcat a sample
// claiming dev-2 (unsigned), one claiming dev-2 signed with its own record
// key, and one claiming itself signed. The first two are dead-lettered as
// unverified claims and get no result; the third gets a result saying
// "cam".
func TestKafkaDeviceClaims(t *testing.T) {
	if _, err := exec.LookPath("kcat"); err != nil {
		t.Fatal("kcat is not installed (apt-get install kcat; make deps installs it)")
	}
	tp, ca, _, camPW := securedPipeline(t, "claims")
	dir := t.TempDir()
	creds, keyFile := filepath.Join(dir, "devices.yaml"), filepath.Join(dir, "psk.key")
	for _, id := range []string{"cam", "dev-2"} {
		if _, err := auth.AddDevice(creds, id, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(keyFile, []byte(auth.NewPSKKey()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(tp.file)
	if err != nil {
		t.Fatal(err)
	}
	// Plain CoAP cannot carry a device credential: off with device auth.
	y := strings.Replace(string(b), "  coap_listen: "+tp.coap+"\n", "  coap_listen: \"off\"\n", 1)
	y += "auth:\n  devices_file: " + creds + "\n  devices_psk_key_file: " + keyFile + "\n"
	if err := os.WriteFile(tp.file, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	up(t, tp)
	p := loadPipeline(t, tp.file)
	reader, err := kafka.ClientOptions(&p.Kafka, "e2e", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	camKey, err := auth.DeviceRecordKey(creds, keyFile, "cam")
	if err != nil {
		t.Fatal(err)
	}
	sampleBytes := testSet(t).Samples[0]
	sample := filepath.Join(dir, "sample")
	if err := os.WriteFile(sample, sampleBytes, 0o644); err != nil {
		t.Fatal(err)
	}
	kcatAsCam := func(id string, headers ...string) {
		t.Helper()
		args := []string{"-b", tp.broker, "-m", "5", "-X", "message.timeout.ms=5000",
			"-X", "security.protocol=SASL_SSL", "-X", "sasl.mechanisms=SCRAM-SHA-512",
			"-X", "sasl.username=cam", "-X", "sasl.password=" + camPW, "-X", "ssl.ca.location=" + ca,
			"-P", "-t", tp.name + ".edge.in", "-k", id}
		for _, h := range headers {
			args = append(args, "-H", h)
		}
		if out, err := exec.Command("kcat", append(args, sample)...).CombinedOutput(); err != nil {
			t.Fatalf("kcat as cam, %s: %v\n%s", id, err, out)
		}
	}
	kcatAsCam("claim-forged", wire.HeaderDevice+"=dev-2")
	kcatAsCam("claim-forged-signed", wire.HeaderDevice+"=dev-2", wire.HeaderDeviceSig+"="+auth.SignClaim(camKey, "dev-2", sampleBytes))
	kcatAsCam("claim-own", wire.HeaderDevice+"=cam", wire.HeaderDeviceSig+"="+auth.SignClaim(camKey, "cam", sampleBytes))

	got := collectResults(t, tp.broker, tp.name+".results", "claim-", 1, time.Minute, reader...)
	if len(got) != 1 || len(got["claim-own"]) != 1 || got["claim-own"][0].Device != "cam" {
		t.Errorf("results: %v, want one for claim-own, device cam", got)
	}
	dlq := readFromStart(t, tp.broker, tp.name+".edge.dlq", reader...)
	defer dlq.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	reasons := map[string]string{}
	for len(reasons) < 2 {
		fs := dlq.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("dead letters: %v, want claim-forged and claim-forged-signed", reasons)
		}
		for _, r := range fs.Records() {
			for _, h := range r.Headers {
				if h.Key == wire.HeaderReason {
					reasons[string(r.Key)] = string(h.Value)
				}
			}
		}
	}
	for _, id := range []string{"claim-forged", "claim-forged-signed"} {
		if !strings.HasPrefix(reasons[id], `unverified device claim: device claim "dev-2"`) {
			t.Errorf("%s: dead-letter reason %q, want an unverified claim of dev-2", id, reasons[id])
		}
	}
	t.Logf("dead-letter reasons: %v", reasons)
}
