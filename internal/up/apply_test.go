package up

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestApplyOnlyFromLoopbackWithoutToken: with no service token (auth.service:
// none) an apply is taken from loopback only; with one, the token decides.
func TestApplyOnlyFromLoopbackWithoutToken(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	for _, tc := range []struct {
		remote string
		want   int
	}{
		{"127.0.0.1:5000", http.StatusOK},
		{"[::1]:5000", http.StatusOK},
		{"192.0.2.7:5000", http.StatusForbidden},
	} {
		r := httptest.NewRequest(http.MethodPost, "/v1/apply", nil)
		r.RemoteAddr = tc.remote
		w := httptest.NewRecorder()
		loopbackWithoutToken(nil, ok).ServeHTTP(w, r)
		if w.Code != tc.want {
			t.Errorf("from %s without a token: %d, want %d (%s)", tc.remote, w.Code, tc.want, w.Body)
		}
	}
}
