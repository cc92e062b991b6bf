package funnel

import (
	"bytes"
	"context"
	"encoding/binary"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

const coapYAML = `
name: c
input: {dtype: float32, shape: [1, 28, 28]}
classes: [a, b]
tiers:
  - {name: edge, model: e.onnx, exit: {output: o}}
kafka: {partitions: 1, produce_timeout: 1s}
funnel: {max_request_bytes: 8192}
`

// startCoAP serves the funnel's CoAP route on a free loopback UDP port.
func startCoAP(t *testing.T, e *env, limits CoAPLimits) string {
	t.Helper()
	l, err := ListenCoAP("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.LocalAddr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := e.f.ServeCoAP(ctx, l, limits); err != nil {
			t.Error(err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return addr
}

// coapClient runs libcoap's client and returns its output.
func coapClient(t *testing.T, args ...string) string {
	t.Helper()
	if _, err := exec.LookPath("coap-client-notls"); err != nil {
		t.Fatal("coap-client-notls missing: apt-get install libcoap3-bin (make deps installs it)")
	}
	out, err := exec.Command("coap-client-notls", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("coap-client-notls %v: %v: %s", args, err, out)
	}
	return string(out)
}

func float32Image() []byte {
	b := make([]byte, 784*4)
	for i := 0; i < 784; i++ {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(float32(i%255)/255))
	}
	return b
}

// TestCoAPBlock1WithLibcoap uploads a 3,136-byte float32 tensor with
// libcoap's client at 1024-, 256- and 64-byte blocks (a new token per block
// and a Request-Tag) and checks Kafka got every byte.
func TestCoAPBlock1WithLibcoap(t *testing.T) {
	e := setupYAML(t, "", coapYAML)
	addr := startCoAP(t, e, CoAPLimits{})
	img := float32Image()
	f := filepath.Join(t.TempDir(), "img.f32")
	os.WriteFile(f, img, 0o644)
	for _, block := range []int{1024, 256, 64} {
		out := coapClient(t, "-m", "post", "-t", "42", "-b", strconv.Itoa(block), "-f", f,
			"coap://"+addr+"/v1/ingest?device=dev-"+strconv.Itoa(block)+"&id=blk-"+strconv.Itoa(block))
		if !strings.Contains(out, "blk-"+strconv.Itoa(block)) {
			t.Errorf("block %d: client printed %q, want the id", block, out)
		}
	}
	recs := e.records(t, "c.edge.in")
	if len(recs) != 3 {
		t.Fatalf("%d records, want 3", len(recs))
	}
	for _, r := range recs {
		m := decodeRecord(t, r)
		if !bytes.Equal(m.Tensor.Data, img) || !strings.HasPrefix(m.Device, "dev-") {
			t.Errorf("%s: %d bytes, device %q; want the whole %d-byte tensor", m.ID, len(m.Tensor.Data), m.Device, len(img))
		}
	}
}

// TestCoAPBadInput: each bad upload gets its 4.xx code and diagnostic, and
// nothing reaches Kafka.
func TestCoAPBadInput(t *testing.T) {
	e := setupYAML(t, "", coapYAML)
	addr := startCoAP(t, e, CoAPLimits{})
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, b, 0o644)
		return p
	}
	nan := float32Image()
	binary.LittleEndian.PutUint32(nan[40:], math.Float32bits(float32(math.NaN())))
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"malformed json", []string{"-m", "post", "-t", "50", "-f", write("bad.json", []byte(`{"data":[1,2`)), "coap://" + addr + "/v1/ingest"}, "4.00"},
		{"wrong element count", []string{"-m", "post", "-t", "42", "-f", write("short", make([]byte, 100)), "coap://" + addr + "/v1/ingest"}, "raw body has 100 bytes, want 3136"},
		{"NaN", []string{"-m", "post", "-t", "42", "-b", "1024", "-f", write("nan", nan), "coap://" + addr + "/v1/ingest"}, "element 10 is NaN"},
		{"unknown path", []string{"-m", "post", "-t", "42", "-f", write("x", []byte{1}), "coap://" + addr + "/v1/nope"}, "4.04"},
		{"too large", []string{"-m", "post", "-t", "42", "-b", "1024", "-f", write("big", make([]byte, 9000)), "coap://" + addr + "/v1/ingest"}, "4.13"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, _ := exec.Command("coap-client-notls", append([]string{"-v", "3"}, tc.args...)...).CombinedOutput()
			if !strings.Contains(string(out), tc.want) {
				t.Errorf("output %q lacks %q", out, tc.want)
			}
		})
	}
	if n := len(e.records(t, "c.edge.in")); n != 0 {
		t.Errorf("%d records written by bad uploads", n)
	}
}

// rawBlock1 builds a confirmable CoAP POST /v1/ingest carrying block num of
// a Block1 upload (64-byte blocks) with a Request-Tag.
func rawBlock1(msgID uint16, token byte, num uint32, more bool, tag byte, payload []byte) []byte {
	b := []byte{0x41, 0x02, byte(msgID >> 8), byte(msgID), token} // ver 1, CON, TKL 1, POST
	last := 0
	opt := func(num int, val []byte) {
		delta := num - last
		last = num
		var ext []byte
		d := delta
		switch {
		case delta >= 269:
			d, ext = 14, []byte{byte((delta - 269) >> 8), byte(delta - 269)}
		case delta >= 13:
			d, ext = 13, []byte{byte(delta - 13)}
		}
		b = append(b, byte(d<<4|len(val)))
		b = append(b, ext...)
		b = append(b, val...)
	}
	opt(11, []byte("v1"))
	opt(11, []byte("ingest"))
	opt(12, []byte{42})
	v := num<<4 | 2 // szx 2: 64-byte blocks
	if more {
		v |= 8
	}
	opt(27, []byte{byte(v)})
	opt(292, []byte{tag})
	b = append(b, 0xff)
	return append(b, payload...)
}

// send sends one datagram and returns the response code as "c.dd".
func send(t *testing.T, conn net.Conn, msg []byte) string {
	t.Helper()
	if _, err := conn.Write(msg); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 2048)
	n, err := conn.Read(buf)
	if err != nil || n < 2 {
		t.Fatalf("no response: %v", err)
	}
	return strconv.Itoa(int(buf[1]>>5)) + "." + strconv.Itoa(int(buf[1]&31)/10) + strconv.Itoa(int(buf[1]&31)%10)
}

// TestCoAPTransferLimits: one peer may hold only PerPeer open transfers, and
// a transfer whose next block never comes is freed after its timeout.
func TestCoAPTransferLimits(t *testing.T) {
	e := setupYAML(t, "", coapYAML)
	addr := startCoAP(t, e, CoAPLimits{PerPeer: 2, TransferTimeout: time.Second})
	conn, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	block := make([]byte, 64)
	if got := send(t, conn, rawBlock1(1, 1, 0, true, 'a', block)); got != "2.31" {
		t.Fatalf("first block of transfer a: %s, want 2.31 Continue", got)
	}
	if got := send(t, conn, rawBlock1(2, 2, 0, true, 'b', block)); got != "2.31" {
		t.Fatalf("first block of transfer b: %s, want 2.31", got)
	}
	if got := send(t, conn, rawBlock1(3, 3, 0, true, 'c', block)); got != "4.29" {
		t.Errorf("third concurrent transfer: %s, want 4.29 Too Many Requests", got)
	}
	// Transfer a stalls past its timeout; its next block finds nothing.
	time.Sleep(2500 * time.Millisecond)
	if got := send(t, conn, rawBlock1(4, 4, 1, true, 'a', block)); got != "4.08" {
		t.Errorf("block after the transfer timed out: %s, want 4.08 Request Entity Incomplete", got)
	}
	// With the stalled transfers freed, a new one may start.
	if got := send(t, conn, rawBlock1(5, 5, 0, true, 'd', block)); got != "2.31" {
		t.Errorf("new transfer after the sweep: %s, want 2.31", got)
	}
	if n := len(e.records(t, "c.edge.in")); n != 0 {
		t.Errorf("%d records written by incomplete transfers", n)
	}
}
