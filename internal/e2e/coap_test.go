package e2e

import (
	"encoding/binary"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ddnn-continuum/ddnn/internal/auth"
	"github.com/ddnn-continuum/ddnn/internal/proctest"
)

// TestCoAPDevices posts images with libcoap's client to `ddnn up`: uint8
// images in one datagram, and float32 tensors of 3,136 bytes with Block1 at
// 1024-, 256- and 64-byte blocks. Each gets the exit tier and class `ddnn
// models eval --per-sample` gives that image.
func TestCoAPDevices(t *testing.T) {
	if _, err := exec.LookPath("coap-client-notls"); err != nil {
		t.Fatal("coap-client-notls missing: apt-get install libcoap3-bin (make deps installs it)")
	}
	ds := testSet(t)
	const n = 6
	dir := t.TempDir()
	post := func(tp testPipeline, id string, file string, block int) {
		args := []string{"-m", "post", "-t", "42", "-f", file}
		if block > 0 {
			args = append(args, "-b", strconv.Itoa(block))
		}
		args = append(args, "coap://"+tp.coap+"/v1/ingest?id="+id)
		out, err := exec.Command("coap-client-notls", args...).CombinedOutput()
		if err != nil || !strings.Contains(string(out), id) {
			t.Fatalf("coap-client-notls %v: %v: %s", args, err, out)
		}
	}

	// uint8 images, one datagram each.
	tp := writePipeline(t, "coapu8", 1, "")
	want := evalPerSample(t, tp.file, len(ds.Samples))
	up(t, tp)
	for i := 0; i < n; i++ {
		f := filepath.Join(dir, "u8-"+strconv.Itoa(i))
		os.WriteFile(f, ds.Samples[i], 0o644)
		post(tp, "coap-"+strconv.Itoa(i), f, 0)
	}
	got := collectResults(t, tp.broker, tp.name+".results", "coap-", n, 60*time.Second)
	for i := 0; i < n; i++ {
		r := got["coap-"+strconv.Itoa(i)]
		if len(r) != 1 || r[0].Class != want[i].Class || r[0].Tier != want[i].Tier {
			t.Errorf("image %d: %+v, models eval says %+v", i, r, want[i])
		}
	}

	// The same images as float32 (already scaled) in blocks.
	tf := writePipeline(t, "coapf32", 1, "")
	b, _ := os.ReadFile(tf.file)
	y := strings.Replace(string(b), "  dtype: uint8\n", "  dtype: float32\n", 1)
	y = strings.Replace(y, "  scale: 0.00392156862745098", "  scale: 1", 1)
	os.WriteFile(tf.file, []byte(y), 0o644)
	up(t, tf)
	scale := float32(1.0 / 255.0)
	blocks := []int{1024, 256, 64}
	for i := 0; i < n; i++ {
		buf := make([]byte, 784*4)
		for j, px := range ds.Samples[i] {
			binary.LittleEndian.PutUint32(buf[4*j:], math.Float32bits(float32(px)*scale))
		}
		f := filepath.Join(dir, "f32-"+strconv.Itoa(i))
		os.WriteFile(f, buf, 0o644)
		post(tf, "f32-"+strconv.Itoa(i), f, blocks[i%len(blocks)])
	}
	got = collectResults(t, tf.broker, tf.name+".results", "f32-", n, 60*time.Second)
	for i := 0; i < n; i++ {
		r := got["f32-"+strconv.Itoa(i)]
		if len(r) != 1 || r[0].Class != want[i].Class || r[0].Tier != want[i].Tier {
			t.Errorf("float32 image %d in %d-byte blocks: %+v, models eval says %+v", i, blocks[i%len(blocks)], r, want[i])
		}
	}
}

// TestCoAPSDevices posts images over CoAP over DTLS with libcoap's
// OpenSSL client and a pre-shared key printed by `ddnn devices psk` to
// `ddnn up` with device tokens: in one datagram and in 64-byte Block1
// blocks, each gets the result `ddnn models eval --per-sample` gives that
// image, from device dev-1; a wrong key fails the handshake.
func TestCoAPSDevices(t *testing.T) {
	if _, err := exec.LookPath("coap-client-openssl"); err != nil {
		t.Skip("coap-client-openssl missing: apt-get install libcoap3-bin (make deps installs it)")
	}
	ds := testSet(t)
	dir := t.TempDir()
	tp := writePipeline(t, "coaps", 1, "")
	creds, keyFile := filepath.Join(dir, "devices.yaml"), filepath.Join(dir, "psk.key")
	if _, err := auth.AddDevice(creds, "dev-1", time.Now()); err != nil {
		t.Fatal(err)
	}
	masterKey, err := exec.Command(ddnn, "devices", "psk-key").Output()
	if err != nil {
		t.Fatalf("ddnn devices psk-key: %v", err)
	}
	os.WriteFile(keyFile, masterKey, 0o600)
	out, err := exec.Command(ddnn, "devices", "psk", "-f", creds, "--key", keyFile, "dev-1").Output()
	if err != nil {
		t.Fatalf("ddnn devices psk: %v", err)
	}
	key := strings.TrimSpace(string(out))
	coaps := proctest.FreeAddr(t)
	b, _ := os.ReadFile(tp.file)
	y := strings.Replace(string(b), "  coap_listen: "+tp.coap+"\n", "  coap_listen: \"off\"\n  coaps_listen: "+coaps+"\n", 1)
	y += "auth:\n  devices_file: " + creds + "\n  devices_psk_key_file: " + keyFile + "\n"
	os.WriteFile(tp.file, []byte(y), 0o644)

	want := evalPerSample(t, tp.file, len(ds.Samples))
	p := up(t, tp)
	if !strings.Contains(p.out.String(), "coaps://"+coaps) {
		t.Errorf("ddnn up's output does not announce coaps://%s:\n%s", coaps, tail(p.out.String(), 20))
	}
	post := func(k, id, file string, block int) (string, error) {
		args := []string{"-B", "5", "-u", "dev-1", "-k", k, "-m", "post", "-t", "application/octet-stream", "-f", file}
		if block > 0 {
			args = append(args, "-b", strconv.Itoa(block))
		}
		args = append(args, "coaps://"+coaps+"/v1/ingest?id="+id)
		out, err := exec.Command("coap-client-openssl", args...).CombinedOutput()
		return string(out), err
	}
	const n = 4
	for i := range n {
		f := filepath.Join(dir, "u8-"+strconv.Itoa(i))
		os.WriteFile(f, ds.Samples[i], 0o644)
		block := 0
		if i%2 == 1 {
			block = 64
		}
		id := "coaps-" + strconv.Itoa(i)
		if out, err := post(key, id, f, block); err != nil || !strings.Contains(out, id) {
			t.Fatalf("coap-client-openssl, block %d: %v: %s", block, err, out)
		}
	}
	got := collectResults(t, tp.broker, tp.name+".results", "coaps-", n, 60*time.Second)
	for i := range n {
		r := got["coaps-"+strconv.Itoa(i)]
		if len(r) != 1 || r[0].Class != want[i].Class || r[0].Tier != want[i].Tier || r[0].Device != "dev-1" {
			t.Errorf("image %d: %+v, models eval says %+v, from dev-1", i, r, want[i])
		}
	}

	wrong := []byte(key)
	wrong[0] ^= 1
	start := time.Now()
	if out, err := post(string(wrong), "coaps-wrong", filepath.Join(dir, "u8-0"), 0); strings.Contains(out, "coaps-wrong") {
		t.Errorf("a wrong key was answered: %v: %s", err, out)
	} else {
		t.Logf("wrong key refused in %v: %v: %s", time.Since(start).Round(time.Millisecond), err, strings.TrimSpace(out))
	}
}

// sampleDecision is where and how `ddnn models eval --per-sample` says one
// sample exits.
type sampleDecision struct {
	Tier  string
	Class int
}

// evalPerSample runs `ddnn models eval --per-sample` on the pipeline file
// and returns its decision for each of the n samples.
func evalPerSample(t *testing.T, file string, n int) []sampleDecision {
	t.Helper()
	out, err := exec.Command(ddnn, "models", "eval", "-f", file, "--json", "--per-sample").Output()
	if err != nil {
		t.Fatalf("models eval: %v", err)
	}
	var ev struct{ Decisions []sampleDecision }
	if err := json.Unmarshal(out, &ev); err != nil || len(ev.Decisions) != n {
		t.Fatalf("models eval --per-sample: %v: %.300s", err, out)
	}
	return ev.Decisions
}
