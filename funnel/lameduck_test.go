package funnel

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strings"
	"testing"
	"time"

	"github.com/ddnn-continuum/ddnn/internal/httpapi"
	"github.com/ddnn-continuum/ddnn/internal/testsupport"
)

// TestRunLameDuckAnswersOpenConnections stops a funnel while a device
// holds an idle keep-alive connection to it: the funnel takes no new
// connection from then on, but a send on the open one is still accepted,
// with "Connection: close", rather than failing unanswered on a
// connection closed under it; Run then returns cleanly.
func TestRunLameDuckAnswersOpenConnections(t *testing.T) {
	r := startRun(t, testYAML, broker(t), nil)
	waitServing(t, r)
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	send := func(id string) (resp *http.Response, reused bool, err error) {
		req, _ := http.NewRequest(http.MethodPost, r.url+httpapi.PathIngest, bytes.NewReader(floats(1, 2, 3, 4)))
		req.Header.Set("Content-Type", "application/octet-stream")
		req.Header.Set(HeaderMessageID, id)
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
			GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused },
		}))
		resp, err = client.Do(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		return resp, reused, err
	}
	if resp, _, err := send("before"); err != nil || resp.StatusCode != http.StatusAccepted || resp.Close {
		t.Fatalf("send before the stop: %v %v", resp, err)
	}
	r.stop()
	addr := strings.TrimPrefix(r.url, "http://")
	testsupport.WaitFor(t, 10*time.Second, "the funnel taking no new connection", func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	resp, reused, err := send("during")
	if err != nil {
		t.Fatalf("a send on the open connection once the stop began: %v", err)
	}
	if !reused || resp.StatusCode != http.StatusAccepted || !resp.Close {
		t.Errorf("a send once the stop began: connection reused %v, %d, closing %v (%v); want on the open connection, 202, closing it", reused, resp.StatusCode, resp.Close, resp.Header)
	}
	if err := r.wait(t); err != nil {
		t.Errorf("Run: %v", err)
	}
}
