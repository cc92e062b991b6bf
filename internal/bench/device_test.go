package bench

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"
	"time"

	"github.com/ddnn-continuum/ddnn/funnel"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/wire"
)

// TestHTTPDeviceEncodings checks what an HTTP device posts in each
// encoding: the raw elements with the id and device in headers, or the
// JSON ingest form the funnel decodes to the same message.
func TestHTTPDeviceEncodings(t *testing.T) {
	in := pipeline.Input{DType: wire.Uint8, Shape: []int{2, 2}}
	sample := []byte{0, 7, 128, 255}
	want := wire.Message{ID: "m1", Device: "bench-003", Tensor: wire.Tensor{DType: in.DType, Shape: in.Shape, Data: sample}}
	for _, encoding := range Encodings {
		t.Run(encoding, func(t *testing.T) {
			var got wire.Message
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				body, _ := io.ReadAll(r.Body)
				var err error
				switch ct := r.Header.Get("Content-Type"); ct {
				case "application/octet-stream":
					got = wire.Message{ID: r.Header.Get(funnel.HeaderMessageID), Device: r.Header.Get(funnel.HeaderDeviceID),
						Tensor: wire.Tensor{DType: in.DType, Shape: in.Shape, Data: body}}
				case wire.ContentTypeJSON:
					got, err = wire.DecodeIngestJSON(body, in.DType, in.Shape)
				default:
					t.Errorf("content type %q", ct)
				}
				if err != nil {
					t.Errorf("body %s: %v", body, err)
				}
				w.WriteHeader(http.StatusAccepted)
			}))
			defer srv.Close()
			site := &pipeline.SiteView{Pipeline: &pipeline.Pipeline{Input: in}}
			d, err := dial(site, ProtocolHTTP, encoding, srv.Listener.Addr().String(), 3, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer d.close()
			if _, err := d.send(context.Background(), "m1", sample); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("funnel got %+v, want %+v", got, want)
			}
		})
	}
	if _, err := dial(&pipeline.SiteView{Pipeline: &pipeline.Pipeline{Input: in}}, ProtocolHTTP, "xml", "127.0.0.1:1", 0, 0); err == nil {
		t.Error("dial accepted encoding xml")
	}
}

// TestHTTPDeviceWait: a device dialled with a wait asks for it in the
// query, and tells a 200 (the result) from a 202 (no result in time).
func TestHTTPDeviceWait(t *testing.T) {
	in := pipeline.Input{DType: wire.Uint8, Shape: []int{2, 2}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if r.URL.Query().Get("wait") != "1.5s" {
			t.Errorf("query %q, want wait=1.5s", r.URL.RawQuery)
		}
		if r.Header.Get(funnel.HeaderMessageID) == "slow" {
			w.WriteHeader(http.StatusAccepted)
			return
		}
		w.Write([]byte(`{"id":"m1"}`))
	}))
	defer srv.Close()
	d, err := dial(&pipeline.SiteView{Pipeline: &pipeline.Pipeline{Input: in}}, ProtocolHTTP, EncodingRaw, srv.Listener.Addr().String(), 0, 1500*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer d.close()
	for id, want := range map[string]bool{"m1": true, "slow": false} {
		if answered, err := d.send(context.Background(), id, []byte{1, 2, 3, 4}); err != nil || answered != want {
			t.Errorf("%s: answered %v, %v; want %v", id, answered, err, want)
		}
	}
	if _, err := dial(&pipeline.SiteView{Pipeline: &pipeline.Pipeline{Input: in}}, ProtocolKafka, EncodingRaw, "", 0, time.Second); err == nil {
		t.Error("a Kafka device dialled with a wait")
	}
}
