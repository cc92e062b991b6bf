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
	out, err := exec.Command(ddnn, "models", "eval", "-f", tp.file, "--json", "--per-sample").Output()
	if err != nil {
		t.Fatalf("models eval: %v", err)
	}
	var ev struct {
		Decisions []struct {
			Tier  string
			Class int
		}
	}
	if err := json.Unmarshal(out, &ev); err != nil || len(ev.Decisions) != len(ds.Samples) {
		t.Fatalf("models eval --per-sample: %v: %.300s", err, out)
	}
	want := ev.Decisions
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
