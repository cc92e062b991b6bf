package e2e

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ddnn-continuum/ddnn/internal/testsupport"
	"github.com/ddnn-continuum/ddnn/internal/wire"
)

// postWaiting posts image as a raw sample with id to the funnel at addr
// with ?wait=wait, and returns the status and body.
func postWaiting(t *testing.T, addr, id string, image []byte, wait string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/v1/ingest?wait="+wait, bytes.NewReader(image))
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set("X-Message-Id", id)
	req.Header.Set("X-Device-Id", "cam-sync")
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}

// TestSyncAnswers runs `ddnn up` and asks for each image's result in the
// answer, over HTTP (?wait=) and CoAP (Uri-Query wait=): each answer is
// the result `ddnn models eval --per-sample` gives that image, as the
// results topic holds it. Requests whose wait (1ms) ends before their
// result get 202, and every one of their results still reaches the
// results topic: none is lost.
func TestSyncAnswers(t *testing.T) {
	if _, err := exec.LookPath("coap-client-notls"); err != nil {
		t.Fatal("coap-client-notls missing: apt-get install libcoap3-bin (make deps installs it)")
	}
	ds := testSet(t)
	tp := writePipeline(t, "syncw", 1, "")
	want := evalPerSample(t, tp.file, len(ds.Samples))
	up(t, tp)
	// The funnel answers waits once it has read the results topic's end.
	n := 0
	testsupport.WaitFor(t, 30*time.Second, "the funnel answering a wait", func() bool {
		n++
		code, _ := postWaiting(t, tp.funnel, "warm-"+strconv.Itoa(n), ds.Samples[0], "5s")
		return code == http.StatusOK
	})

	const images = 6
	answers := map[string]wire.Result{}
	for i := range images {
		id := "http-" + strconv.Itoa(i)
		code, body := postWaiting(t, tp.funnel, id, ds.Samples[i], "10s")
		var r wire.Result
		if err := json.Unmarshal(body, &r); code != http.StatusOK || err != nil {
			t.Fatalf("image %d: %d %s (%v), want 200 with its result", i, code, body, err)
		}
		if r.ID != id || r.Device != "cam-sync" || r.Class != want[i].Class || r.Tier != want[i].Tier {
			t.Errorf("image %d: answer %+v, models eval says %+v", i, r, want[i])
		}
		answers[id] = r
	}
	dir := t.TempDir()
	for i := range images {
		id := "coap-" + strconv.Itoa(i)
		f := filepath.Join(dir, id)
		os.WriteFile(f, ds.Samples[i], 0o644)
		out, err := exec.Command("coap-client-notls", "-m", "post", "-t", "42", "-f", f,
			"coap://"+tp.coap+"/v1/ingest?device=cam-sync&id="+id+"&wait=10s").CombinedOutput()
		var r wire.Result
		if jerr := json.Unmarshal(bytes.TrimSpace(out), &r); err != nil || jerr != nil {
			t.Fatalf("coap image %d: %v: %s (%v), want its result", i, err, out, jerr)
		}
		if r.ID != id || r.Class != want[i].Class || r.Tier != want[i].Tier {
			t.Errorf("coap image %d: answer %+v, models eval says %+v", i, r, want[i])
		}
		answers[id] = r
	}
	// The answers are the results on the topic.
	got := collectResults(t, tp.broker, tp.name+".results", "http-", images, 30*time.Second)
	for id, rs := range got {
		if len(rs) != 1 || !rs[0].ExitedAt.Equal(answers[id].ExitedAt) || rs[0].Confidence != answers[id].Confidence {
			t.Errorf("%s: topic holds %+v, the answer was %+v", id, rs, answers[id])
		}
	}

	// Waits too short for any result: 202, and no result lost.
	const short = 20
	timedOut := 0
	for i := range short {
		code, body := postWaiting(t, tp.funnel, "short-"+strconv.Itoa(i), ds.Samples[i], "1ms")
		switch code {
		case http.StatusAccepted:
			if !strings.Contains(string(body), `"id":"short-`+strconv.Itoa(i)+`"`) {
				t.Errorf("short wait %d: 202 %s, want the id", i, body)
			}
			timedOut++
		case http.StatusOK:
		default:
			t.Fatalf("short wait %d: %d %s", i, code, body)
		}
	}
	if timedOut == 0 {
		t.Errorf("no wait of 1ms ended before its result")
	}
	if got := collectResults(t, tp.broker, tp.name+".results", "short-", short, 60*time.Second); len(got) != short {
		t.Errorf("%d of %d results of timed-out waits on the topic", len(got), short)
	}
}
