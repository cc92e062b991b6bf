package funnel

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ddnn-continuum/ddnn/internal/httpapi"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/wire"
)

// withMetrics gives e's funnel metrics on a fresh registry.
func withMetrics(e *env) *Metrics {
	e.f.m = NewMetrics(prometheus.NewRegistry())
	return e.f.m
}

func refusals(m *Metrics, route, reason string) int {
	return int(testutil.ToFloat64(m.refusals.WithLabelValues(route, reason)))
}

// TestIngestIDRules: every id an HTTP ingest gives (headers, JSON fields)
// must keep the rule, and two that differ are refused naming both; nothing
// refused reaches Kafka.
func TestIngestIDRules(t *testing.T) {
	e := setup(t, "")
	m := withMetrics(e)
	long := strings.Repeat("x", 129)
	json := func(fields string) []byte { return []byte(`{` + fields + `"data":[1,2,3,4]}`) }
	for _, tc := range []struct {
		name   string
		body   []byte
		hdr    http.Header
		status int
		want   string
		query  string
	}{
		{"header id too long", nil, http.Header{HeaderMessageID: {long}}, 400, "X-Message-Id: 129 bytes, over the limit of 128 (an id is 1 to 128 bytes of ASCII letters, digits and -_.:@/+=)", ""},
		{"header device with a space", nil, http.Header{HeaderDeviceID: {"cam 1"}}, 400, `X-Device-Id: byte 3 is ' ', not allowed`, ""},
		{"json device not ASCII", json(`"device":"caméra",`), nil, 400, `JSON \"device\": byte 3 is 0xc3, not allowed`, ""},
		{"json id with a newline", json(`"id":"a\nb",`), nil, 400, `JSON \"id\": byte 1 is 0x0a`, ""},
		{"json and header differ", json(`"id":"a",`), http.Header{HeaderMessageID: {"b"}}, 400, `message id: JSON \"id\" is \"a\" but X-Message-Id is \"b\"; give one, or the same in both`, ""},
		{"two headers differ", nil, http.Header{HeaderDeviceID: {"d1", "d2"}}, 400, `device id: X-Device-Id is \"d1\" but X-Device-Id is \"d2\"`, ""},
		{"json and header agree", json(`"id":"same-1","device":"cam-1",`), http.Header{HeaderMessageID: {"same-1"}, HeaderDeviceID: {"cam-1"}}, 202, `"id":"same-1"`, ""},
		{"every allowed character", nil, http.Header{HeaderMessageID: {"aZ09-_.:@/+="}, HeaderDeviceID: {strings.Repeat("d", 128)}}, 202, `"id":"aZ09-_.:@/+="`, ""},
		{"query id", nil, nil, 202, `"id":"q-1"`, "?id=q-1&device=cam-2"},
		{"query and header differ", nil, http.Header{HeaderMessageID: {"h-1"}}, 400, `message id: X-Message-Id is \"h-1\" but ?id= is \"q-1\"`, "?id=q-1"},
		{"query device with a space", nil, nil, 400, `?device=: byte 3 is ' ', not allowed`, "?device=cam%201"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ct, body := "application/json", tc.body
			if body == nil {
				ct, body = "application/octet-stream", floats(1, 2, 3, 4)
			}
			req, _ := http.NewRequest("POST", e.srv.URL+httpapi.PathIngest+tc.query, strings.NewReader(string(body)))
			req.Header = tc.hdr.Clone()
			if req.Header == nil {
				req.Header = http.Header{}
			}
			req.Header.Set("Content-Type", ct)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b := readAll(resp)
			if resp.StatusCode != tc.status || !strings.Contains(b, tc.want) {
				t.Errorf("%d %s; want %d containing %s", resp.StatusCode, b, tc.status, tc.want)
			}
		})
	}
	if n := refusals(m, "ingest", reasonInvalidID); n != 5 {
		t.Errorf("%d invalid_id refusals, want 5", n)
	}
	if n := refusals(m, "ingest", reasonIDConflict); n != 3 {
		t.Errorf("%d id_conflict refusals, want 3", n)
	}
	recs := e.records(t, e.p.InputTopic("edge"))
	if len(recs) != 3 {
		t.Fatalf("%d records, want the 3 accepted", len(recs))
	}
	if !slices.ContainsFunc(recs, func(r *kgo.Record) bool { return string(r.Key) == "cam-2" }) {
		t.Error("no record keyed by the device ?device= gave")
	}
}

func readAll(resp *http.Response) string {
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			return b.String()
		}
	}
}

// FuzzIngestIDs drives the id resolution of HTTP headers and CoAP queries:
// no panic; what is accepted keeps the rule and is what every source that
// gave a value gave; an error stays short whatever the input.
func FuzzIngestIDs(f *testing.F) {
	f.Add("", "", "m-1", "cam-1", "id=m-1&device=cam-1")
	f.Add("a", "d", "b", "d", "id=a")
	f.Add(strings.Repeat("x", 129), "", "", "", "")
	f.Add("", "cam 1", "", "", "device=é")
	f.Add("", "", "", "", "id=&device=&id=z&other=1")
	f.Add("\x00", "", "a\r\nb", "", "id=%20")
	f.Fuzz(func(t *testing.T, bodyID, bodyDev, hdrID, hdrDev, query string) {
		check := func(form string, m wire.Message, ids, devs []idValue, err error) {
			if err != nil {
				if len(err.Error()) > 2*wire.MaxIDBytes+300 {
					t.Fatalf("%s: error of %d bytes", form, len(err.Error()))
				}
				return
			}
			for _, c := range []struct {
				got  string
				srcs []idValue
			}{{m.ID, append(ids, idValue{fieldJSONID, bodyID})}, {m.Device, append(devs, idValue{fieldJSONDevice, bodyDev})}} {
				if c.got != "" && wire.CheckID("", c.got) != nil {
					t.Fatalf("%s: accepted %q", form, c.got)
				}
				for _, s := range c.srcs {
					if s.v != "" && s.v != c.got {
						t.Fatalf("%s: accepted %q though %s gave %q", form, c.got, s.field, s.v)
					}
				}
			}
		}
		h := http.Header{}
		if hdrID != "" {
			h[HeaderMessageID] = []string{hdrID}
		}
		if hdrDev != "" {
			h[HeaderDeviceID] = []string{hdrDev}
		}
		m := wire.Message{ID: bodyID, Device: bodyDev}
		ids, devs := requestIDs(&http.Request{Header: h, URL: &url.URL{}})
		check("http", m, ids, devs, resolveIDs(&m, ids, devs))
		m = wire.Message{ID: bodyID, Device: bodyDev}
		ids, devs = queryIDs(strings.Split(query, "&"))
		check("coap", m, ids, devs, resolveIDs(&m, ids, devs))
	})
}

// TestMethodNotAllowed: a wrong method on a route gets 405 with Allow
// listing the right ones, on every route, /metrics included; an unknown
// path still gets 404.
func TestMethodNotAllowed(t *testing.T) {
	r := startRun(t, testYAML, broker(t), prometheus.NewRegistry())
	waitServing(t, r)
	for _, tc := range []struct{ method, path, allow string }{
		{"GET", httpapi.PathIngest, "POST"},
		{"PUT", httpapi.PathIngest, "POST"},
		{"GET", httpapi.PathTiers + "cloud", "POST"},
		{"DELETE", httpapi.PathResults, "POST"},
		{"GET", httpapi.PathDrain, "POST"},
		{"POST", "/healthz", "GET, HEAD"},
		{"PUT", "/readyz", "GET, HEAD"},
		{"POST", "/metrics", "GET, HEAD"},
	} {
		t.Run(tc.method+tc.path, func(t *testing.T) {
			base := r.durl // the delivery zone's routes
			if tc.path == httpapi.PathIngest || tc.path == "/healthz" || tc.path == "/readyz" {
				base = r.url
			}
			req, _ := http.NewRequest(tc.method, base+tc.path, nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body := readAll(resp)
			resp.Body.Close()
			if resp.StatusCode != 405 || resp.Header.Get("Allow") != tc.allow || !strings.Contains(body, "allowed: "+tc.allow) {
				t.Errorf("%d Allow %q %s; want 405 with Allow %q", resp.StatusCode, resp.Header.Get("Allow"), body, tc.allow)
			}
		})
	}
	resp, err := http.Get(r.url + "/v1/nope")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 || resp.Header.Get("Allow") != "" {
		t.Errorf("unknown path: %d Allow %q, want 404", resp.StatusCode, resp.Header.Get("Allow"))
	}
	if resp, err := http.Get(r.url + "/healthz"); err != nil || resp.StatusCode != 200 {
		t.Errorf("GET /healthz: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
}

// TestIngestUnsupportedMediaType: 415 lists exactly the content types
// ingest takes, in the body and in Accept-Post.
func TestIngestUnsupportedMediaType(t *testing.T) {
	e := setup(t, "")
	for _, ct := range []string{"text/plain", "", "application/x-ddnn-batch", "not a type"} {
		resp, body := e.post(t, httpapi.PathIngest, ct, []byte("x"), nil)
		if resp.StatusCode != 415 || !strings.Contains(body, "(supported: application/octet-stream, application/json)") ||
			resp.Header.Get("Accept-Post") != "application/octet-stream, application/json" {
			t.Errorf("%q: %d %s Accept-Post %q", ct, resp.StatusCode, body, resp.Header.Get("Accept-Post"))
		}
	}
}

// TestDeviceRateLimit: over its bucket a device gets 429 with Retry-After
// (seconds, rounded up) while other devices go on; a device that gives no
// id is limited by its address; the bucket refills with time.
func TestDeviceRateLimit(t *testing.T) {
	e := setupYAML(t, "", strings.Replace(testYAML, "funnel: {max_request_bytes: 2048}", "funnel: {max_request_bytes: 2048, device_rate_limit: {rate: 0.4, burst: 2}}", 1))
	m := withMetrics(e)
	now := time.Unix(1_800_000_000, 0)
	e.f.now = func() time.Time { return now }
	send := func(device string) (*http.Response, string) {
		hdr := map[string]string{}
		if device != "" {
			hdr[HeaderDeviceID] = device
		}
		return e.post(t, httpapi.PathIngest, "application/octet-stream", floats(1, 2, 3, 4), hdr)
	}
	for i := range 2 {
		if resp, body := send("cam-1"); resp.StatusCode != 202 {
			t.Fatalf("message %d within the burst: %d %s", i, resp.StatusCode, body)
		}
	}
	resp, body := send("cam-1")
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "3" ||
		!strings.Contains(body, `device \"cam-1\" is over funnel.device_rate_limit (0.4 messages/s, burst 2): retry in 3s`) {
		t.Errorf("over the burst: %d Retry-After %q %s; want 429, Retry-After 3 (2.5s rounded up)", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	if resp, body := send("cam-2"); resp.StatusCode != 202 {
		t.Errorf("another device: %d %s", resp.StatusCode, body)
	}
	for range 2 {
		send("")
	}
	if resp, body := send(""); resp.StatusCode != 429 || !strings.Contains(body, "this device is over") {
		t.Errorf("a device without id over the burst: %d %s", resp.StatusCode, body)
	}
	now = now.Add(2500 * time.Millisecond)
	if resp, body := send("cam-1"); resp.StatusCode != 202 {
		t.Errorf("after Retry-After: %d %s", resp.StatusCode, body)
	}
	if n := refusals(m, "ingest", reasonRateLimited); n != 2 {
		t.Errorf("%d rate_limited refusals, want 2", n)
	}
	if n := len(e.records(t, e.p.InputTopic("edge"))); n != 6 {
		t.Errorf("%d records, want the 6 accepted", n)
	}
}

// TestDeviceLimiterMemory: the limiter never tracks more than max_devices,
// and forgets buckets that refilled.
func TestDeviceLimiterMemory(t *testing.T) {
	l := newDeviceLimiter(pipeline.RateLimit{Rate: 10, Burst: 20, MaxDevices: 100})
	now := time.Unix(0, 0)
	for i := range 10_000 {
		if ok, _ := l.allow("dev-"+strconv.Itoa(i), now); !ok {
			t.Fatalf("a new device was refused")
		}
		if n := l.tracked(); n > 100 {
			t.Fatalf("%d devices tracked, cap 100", n)
		}
	}
	// A device seen recently keeps its bucket: emptied, it is refused.
	for range 20 {
		l.allow("busy", now)
	}
	if ok, wait := l.allow("busy", now); ok || wait != 100*time.Millisecond {
		t.Errorf("emptied bucket: ok %v wait %s, want refused for 100ms", ok, wait)
	}
	// 2s later (burst/rate) every bucket refilled: all are forgotten.
	now = now.Add(2 * time.Second)
	l.allow("late", now)
	if n := l.tracked(); n != 1 {
		t.Errorf("%d devices tracked after every bucket refilled, want 1", n)
	}
}

// A raw CoAP request: options (number, value) in any order.
type rawOpt struct {
	num int
	val []byte
}

func uintBytes(v uint32) []byte {
	b := binary.BigEndian.AppendUint32(nil, v)
	for len(b) > 0 && b[0] == 0 {
		b = b[1:]
	}
	return b
}

// coapPost builds a confirmable POST /v1/ingest with opts and payload.
func coapPost(msgID uint16, token byte, opts []rawOpt, payload []byte) []byte {
	opts = append([]rawOpt{{11, []byte("v1")}, {11, []byte("ingest")}}, opts...)
	slices.SortStableFunc(opts, func(a, b rawOpt) int { return a.num - b.num })
	b := []byte{0x41, 0x02, byte(msgID >> 8), byte(msgID), token}
	nib := func(v int) (int, []byte) {
		switch {
		case v >= 269:
			return 14, []byte{byte((v - 269) >> 8), byte(v - 269)}
		case v >= 13:
			return 13, []byte{byte(v - 13)}
		}
		return v, nil
	}
	last := 0
	for _, o := range opts {
		d, dext := nib(o.num - last)
		l, lext := nib(len(o.val))
		last = o.num
		b = append(b, byte(d<<4|l))
		b = append(append(append(b, dext...), lext...), o.val...)
	}
	if len(payload) > 0 {
		b = append(append(b, 0xff), payload...)
	}
	return b
}

// coapAnswer is a parsed response: code as "c.dd", options, payload.
type coapAnswer struct {
	code    string
	opts    map[int][]byte
	payload string
}

// exchange sends msg on conn and parses the answer.
func exchange(t *testing.T, conn net.Conn, msg []byte) coapAnswer {
	t.Helper()
	if _, err := conn.Write(msg); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 4096)
	n, err := conn.Read(buf)
	if err != nil || n < 4 {
		t.Fatalf("no response: %v", err)
	}
	b := buf[:n]
	a := coapAnswer{code: fmt.Sprintf("%d.%02d", b[1]>>5, b[1]&31), opts: map[int][]byte{}}
	i, num := 4+int(b[0]&15), 0
	ext := func(v int) int {
		switch v {
		case 13:
			i++
			return 13 + int(b[i-1])
		case 14:
			i += 2
			return 269 + int(b[i-2])<<8 | int(b[i-1])
		}
		return v
	}
	for i < len(b) && b[i] != 0xff {
		d, l := int(b[i]>>4), int(b[i]&15)
		i++
		num += ext(d)
		l = ext(l)
		a.opts[num] = b[i : i+l]
		i += l
	}
	if i < len(b) {
		a.payload = string(b[i+1:])
	}
	return a
}

func optUint(v []byte) int {
	n := 0
	for _, c := range v {
		n = n<<8 | int(c)
	}
	return n
}

// coapJSON is a JSON ingest of the CoAP test pipeline's input with fields.
func coapJSON(fields string) []byte {
	return []byte(`{` + fields + `"data":[` + strings.TrimSuffix(strings.Repeat("0.5,", 784), ",") + `]}`)
}

// TestCoAPIDsAndRateLimit: over CoAP, ids from ?id= / ?device= and the
// JSON body keep the rule and must agree (4.00 naming both), and a device
// over its bucket gets 4.29 with Max-Age.
func TestCoAPIDsAndRateLimit(t *testing.T) {
	e := setupYAML(t, "", strings.Replace(coapYAML, "funnel: {max_request_bytes: 8192}", "funnel: {max_request_bytes: 8192, device_rate_limit: {rate: 0.5, burst: 1}}", 1))
	m := withMetrics(e)
	now := time.Unix(1_800_000_000, 0)
	e.f.now = func() time.Time { return now }
	addr := startCoAP(t, e, CoAPLimits{})
	conn, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	jsonCF := rawOpt{12, []byte{50}}
	q := func(s string) rawOpt { return rawOpt{15, []byte(s)} }
	for i, tc := range []struct {
		name    string
		opts    []rawOpt
		body    []byte
		code    string
		payload string
	}{
		{"body and query ids differ", []rawOpt{jsonCF, q("id=b")}, coapJSON(`"id":"a",`), "4.00", `message id: JSON "id" is "a" but ?id= is "b"; give one, or the same in both`},
		{"body and query devices differ", []rawOpt{jsonCF, q("device=d2")}, coapJSON(`"device":"d1",`), "4.00", `device id: JSON "device" is "d1" but ?device= is "d2"`},
		{"query id too long", []rawOpt{q("id=" + strings.Repeat("z", 200))}, float32Image(), "4.00", "?id=: 200 bytes, over the limit of 128"},
		{"query device with a space", []rawOpt{q("device=cam 1")}, float32Image(), "4.00", "?device=: byte 3 is ' ', not allowed"},
		{"agreeing ids", []rawOpt{jsonCF, q("id=c-1"), q("device=cam-1")}, coapJSON(`"id":"c-1","device":"cam-1",`), "2.01", "c-1"},
		{"over the bucket", []rawOpt{q("id=c-2"), q("device=cam-1")}, float32Image(), "4.29", `device "cam-1" is over funnel.device_rate_limit (0.5 messages/s, burst 1): retry in 2s`},
		{"another device", []rawOpt{q("id=c-3"), q("device=cam-2")}, float32Image(), "2.01", "c-3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := exchange(t, conn, coapPost(uint16(100+i), byte(i), tc.opts, tc.body))
			if a.code != tc.code || !strings.Contains(a.payload, tc.payload) {
				t.Errorf("%s %q; want %s containing %q", a.code, a.payload, tc.code, tc.payload)
			}
			if tc.code == "4.29" && optUint(a.opts[14]) != 2 {
				t.Errorf("Max-Age %v, want 2", a.opts[14])
			}
		})
	}
	if refusals(m, "coap", reasonIDConflict) != 2 || refusals(m, "coap", reasonInvalidID) != 2 || refusals(m, "coap", reasonRateLimited) != 1 {
		t.Errorf("refusals: conflict %d, invalid %d, rate %d; want 2, 2, 1", refusals(m, "coap", reasonIDConflict), refusals(m, "coap", reasonInvalidID), refusals(m, "coap", reasonRateLimited))
	}
	if n := len(e.records(t, "c.edge.in")); n != 2 {
		t.Errorf("%d records, want the 2 accepted", n)
	}
}

// block1 is a Block1 option value: block num of szx, more to come.
func block1(num uint32, more bool, szx uint32) rawOpt {
	v := num<<4 | szx
	if more {
		v |= 8
	}
	return rawOpt{27, uintBytes(v)}
}

// TestCoAPReassemblyCaps: a peer's open transfers together stay within
// max_bytes_per_peer (4.13), and many peers each starting a large upload
// cannot make the funnel hold more than max_bytes (5.03 with Max-Age);
// once transfers end, uploads are taken again.
func TestCoAPReassemblyCaps(t *testing.T) {
	e := setupYAML(t, "", coapYAML) // max_request_bytes 8192
	m := withMetrics(e)
	const total = 20000
	addr := startCoAP(t, e, CoAPLimits{PerPeer: 4, PeerBytes: 9000, TotalBytes: total, TransferTimeout: time.Minute})
	held := func() int { return int(testutil.ToFloat64(m.held)) }
	dial := func() net.Conn {
		c, err := net.Dial("udp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	blk := make([]byte, 1024) // szx 6
	tag := func(s string) rawOpt { return rawOpt{292, []byte(s)} }
	size1 := func(n uint32) rawOpt { return rawOpt{60, uintBytes(n)} }

	// One peer: an announced 8,000-byte upload holds 8,000 bytes; a second
	// upload of the same peer has no room.
	p := dial()
	if a := exchange(t, p, coapPost(1, 1, []rawOpt{block1(0, true, 6), tag("a"), size1(8000)}, blk)); a.code != "2.31" || held() != 8000 {
		t.Fatalf("first upload: %s %s, %d bytes held", a.code, a.payload, held())
	}
	if a := exchange(t, p, coapPost(2, 2, []rawOpt{block1(0, true, 6), tag("b")}, blk)); a.code != "4.13" || !strings.Contains(a.payload, "over the limit of 9000 per peer (funnel.coap_reassembly.max_bytes_per_peer)") {
		t.Errorf("second upload of the peer: %s %q; want 4.13 naming max_bytes_per_peer", a.code, a.payload)
	}
	if a := exchange(t, p, coapPost(3, 3, []rawOpt{block1(0, true, 6), tag("c"), size1(9000)}, blk)); a.code != "4.13" || optUint(a.opts[60]) != 8192 {
		t.Errorf("announced upload over max_request_bytes: %s Size1 %v; want 4.13 with Size1 8192", a.code, a.opts[60])
	}
	if a := exchange(t, p, coapPost(4, 4, []rawOpt{block1(5, true, 6), tag("a")}, blk)); a.code != "4.08" || held() != 0 {
		t.Errorf("block out of order: %s, %d bytes held; want 4.08 and the transfer freed", a.code, held())
	}

	// 30 peers each upload 8 KiB block by block, round robin: the funnel
	// never holds more than the total cap, and the peers beyond it are
	// told to come back later.
	peers := make([]net.Conn, 30)
	for i := range peers {
		peers[i] = dial()
	}
	refused := map[int]bool{}
	most := 0
	for num := range uint32(8) {
		for i, c := range peers {
			if refused[i] {
				continue
			}
			a := exchange(t, c, coapPost(uint16(10+num), byte(num), []rawOpt{block1(num, true, 6), tag("x")}, blk))
			switch a.code {
			case "2.31":
			case "5.03":
				refused[i] = true
				if optUint(a.opts[14]) != 1 || !strings.Contains(a.payload, "(funnel.coap_reassembly.max_bytes); retry later") {
					t.Errorf("peer %d: 5.03 Max-Age %v %q", i, a.opts[14], a.payload)
				}
			default:
				t.Fatalf("peer %d block %d: %s %q", i, num, a.code, a.payload)
			}
			most = max(most, held())
			if h := held(); h > total {
				t.Fatalf("the funnel holds %d bytes, over the cap of %d", h, total)
			}
		}
	}
	if len(refused) == 0 || len(refused) == len(peers) {
		t.Fatalf("%d of %d peers refused; want some, not all", len(refused), len(peers))
	}
	if most < total-1024 {
		t.Errorf("at most %d bytes held; the cap of %d was never approached", most, total)
	}
	if n := refusals(m, "coap", reasonTotalBytes); n != len(refused) {
		t.Errorf("%d reassembly_total refusals, want %d", n, len(refused))
	}

	// A peer ends its upload: the bytes are free again, and a refused
	// peer may start one.
	done, again := -1, -1
	for i := range peers {
		if refused[i] {
			again = i
		} else {
			done = i
		}
	}
	before := held()
	if a := exchange(t, peers[done], coapPost(50, 50, []rawOpt{block1(8, false, 6), tag("x")}, nil)); a.code != "4.00" || !strings.Contains(a.payload, "raw body has 8192 bytes") {
		t.Errorf("last block: %s %q; want the 8 KiB upload decoded (and refused for its size)", a.code, a.payload)
	}
	if held() != before-8192 {
		t.Errorf("%d bytes held after an upload ended, want %d", held(), before-8192)
	}
	if a := exchange(t, peers[again], coapPost(51, 51, []rawOpt{block1(0, true, 6), tag("y")}, blk)); a.code != "2.31" {
		t.Errorf("refused peer after memory was freed: %s %q", a.code, a.payload)
	}
}

// TestReassemblyMemoryBounded: 2,000 peers each trying to upload 64 KiB
// grow the heap by about the cap, not by what they send.
func TestReassemblyMemoryBounded(t *testing.T) {
	const total = 1 << 20
	ra := newReassembly(CoAPLimits{PerPeer: 4, PeerBytes: 64 << 10, TotalBytes: total, TransferTimeout: time.Minute}, 64<<10, nil)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	blk := make([]byte, 1024)
	now := time.Now()
	for num := range uint32(64) {
		for p := range 2000 {
			ra.block("10.0.0."+strconv.Itoa(p)+":5683", []byte{1}, num, true, 6, -1, blk, now)
		}
		if h := ra.heldBytes(); h > total {
			t.Fatalf("block %d: %d bytes held, over the cap of %d", num, h, total)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > total+4<<20 {
		t.Errorf("heap grew by %d bytes with a cap of %d", grew, total)
	}
	runtime.KeepAlive(ra)
}
