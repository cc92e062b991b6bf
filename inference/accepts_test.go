package inference

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ddnn-continuum/ddnn/internal/httpapi"
	"github.com/ddnn-continuum/ddnn/internal/wire"
)

// postFrom posts msgs to the replica at url as forwards producer wrote
// (httpapi.HeaderProducer; none when producer is "").
func postFrom(t *testing.T, url, producer string, msgs []wire.Message) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url+httpapi.PathInfer, bytes.NewReader(encode(t, wire.Binary, msgs)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", wire.Binary.ContentType())
	if producer != "" {
		req.Header.Set(httpapi.HeaderProducer, producer)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// forwards are n fog inputs of the given width, as an edge model writes
// them.
func forwards(n, width int) []wire.Message {
	msgs := make([]wire.Message, n)
	for i := range msgs {
		msgs[i] = wire.Message{ID: string(rune('a' + i)), Tensor: wire.Float32TensorOf([]int{width}, make([]float32, width))}
	}
	return msgs
}

// TestReplicaAcceptsProducers: a replica reads forwards only from the
// previous tier's models it accepts. With tiers[].accepts, those it
// names (by label or sha256 prefix); without, those whose forward fits
// its input. Any other producer is answered StatusNotAccepted, with the
// reason, and counted as not_accepted, never as a bad request (which
// would dead-letter the forwards): the connector takes them elsewhere.
func TestReplicaAcceptsProducers(t *testing.T) {
	fits := forwards(2, 32) // the shipped edge writes [N,32], the fog reads it
	misfits := forwards(2, 48)

	t.Run("by shape", func(t *testing.T) {
		m := NewMetrics(prometheus.NewRegistry())
		_, srv := newFunction(t, "fog", Config{Metrics: m})
		if code, body := postFrom(t, srv.URL, "0123456789ab@v1", fits); code != http.StatusOK {
			t.Fatalf("fitting forwards: status %d: %s", code, body)
		}
		code, body := postFrom(t, srv.URL, "0123456789ab@w48", misfits)
		if code != httpapi.StatusNotAccepted || !strings.Contains(body, "forwards of 0123456789ab@w48 are float32 [48]") {
			t.Fatalf("misfitting forwards: status %d: %s; want %d naming the producer and the shape", code, body, httpapi.StatusNotAccepted)
		}
		// Without a producer the same misfit is the records' fault, as
		// before models were named.
		if code, _ := postFrom(t, srv.URL, "", misfits); code != http.StatusBadRequest {
			t.Errorf("misfit without a producer: status %d, want 400", code)
		}
		if got := testutil.ToFloat64(m.requests.WithLabelValues("fog", outcomeNotAccepted)); got != 1 {
			t.Errorf("not_accepted requests = %v, want 1", got)
		}
	})

	t.Run("by accepts", func(t *testing.T) {
		p := shipped(t)
		p.Tiers[1].Accepts = []string{"v2", "fedcba98"}
		_, srv := newFunction(t, "fog", Config{Pipeline: p, Metrics: NewMetrics(prometheus.NewRegistry())})
		for _, producer := range []string{"0123456789ab@v2", "fedcba987654", "fedcba987654@v9"} {
			if code, body := postFrom(t, srv.URL, producer, fits); code != http.StatusOK {
				t.Errorf("producer %s, which accepts names: status %d: %s", producer, code, body)
			}
		}
		code, body := postFrom(t, srv.URL, "0123456789ab@v1", fits)
		if code != httpapi.StatusNotAccepted || !strings.Contains(body, "accepts forwards of v2, fedcba98 (accepts), not of 0123456789ab@v1") {
			t.Errorf("producer accepts does not name: status %d: %s", code, body)
		}
		if code, _ := postFrom(t, srv.URL, "not a model", fits); code != http.StatusBadRequest {
			t.Errorf("unreadable producer: status %d, want 400", code)
		}
	})
}
