package httpapi

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/ddnn-continuum/ddnn/internal/wire"
)

// TestWriteError: the answer is the JSON error body; a 503 asks to retry
// after a second, other codes do not.
func TestWriteError(t *testing.T) {
	for _, code := range []int{http.StatusBadRequest, http.StatusServiceUnavailable} {
		w := httptest.NewRecorder()
		WriteError(w, code, &wire.ErrorBody{Error: "no"})
		body, err := wire.DecodeErrorBody(w.Body.Bytes())
		if w.Code != code || err != nil || body.Error != "no" || w.Header().Get("Content-Type") != wire.ContentTypeJSON {
			t.Errorf("%d: answered %d %q (%v), content type %q", code, w.Code, w.Body, err, w.Header().Get("Content-Type"))
		}
		if got, want := w.Header().Get("Retry-After"), map[bool]string{true: "1"}[code == http.StatusServiceUnavailable]; got != want {
			t.Errorf("%d: Retry-After %q, want %q", code, got, want)
		}
	}
}

// TestPaths: the paths servers route and clients ask for.
func TestPaths(t *testing.T) {
	if got := TierPath("fog"); got != "/v1/tiers/fog" {
		t.Errorf("TierPath(fog) = %s", got)
	}
	mux := http.NewServeMux()
	mux.HandleFunc(ReplicasPattern, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(r.PathValue("tier"))) })
	w := httptest.NewRecorder()
	mux.ServeHTTP(w, httptest.NewRequest(http.MethodGet, ReplicasPath("fog"), nil))
	if w.Code != http.StatusOK || w.Body.String() != "fog" {
		t.Errorf("ReplicasPath(fog) is not routed by ReplicasPattern to tier fog: %d %q", w.Code, w.Body)
	}
}
