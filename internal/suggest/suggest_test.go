package suggest

import "testing"

func TestNearest(t *testing.T) {
	names := []string{"output", "scores", "policy", "threshold"}
	for _, tc := range []struct{ in, want string }{
		{"treshold", "threshold"},
		{"thresholds", "threshold"},
		{"polcy", "policy"},
		{"score", "scores"},
		{"threshold", ""}, // an existing name is no suggestion
		{"latency", ""},   // too far from every name
		{"", ""},
	} {
		if got := Nearest(tc.in, names); got != tc.want {
			t.Errorf("Nearest(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestDistance(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"", "", 0}, {"a", "", 1}, {"", "abc", 3}, {"kitten", "sitting", 3}, {"max_batch", "max_bacth", 2},
	} {
		if got := Distance(tc.a, tc.b); got != tc.want {
			t.Errorf("Distance(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}
