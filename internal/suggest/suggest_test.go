package suggest

import "testing"

func TestNearest(t *testing.T) {
	names := []string{"output", "scores", "policy", "threshold"}
	for _, tc := range []struct{ in, want string }{
		{"treshold", "threshold"},
		{"thresholds", "threshold"},
		{"polcy", "policy"},
		{"score", "scores"},
		{"plicy", "policy"},
		{"nmae", ""},         // one swap from "name", not a candidate here
		{"outptu", "output"}, // a swap is one edit
		{"cuts", ""},         // two edits from "output"'s neighbours is too far for four letters
		{"threshold", ""},    // an existing name is no suggestion
		{"latency", ""},      // too far from every name
		{"", ""},
	} {
		if got := Nearest(tc.in, names); got != tc.want {
			t.Errorf("Nearest(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	// Two edits are a typo in a long name, not in a short one.
	if got := Nearest("cuts", []string{"auth"}); got != "" {
		t.Errorf("Nearest(cuts, [auth]) = %q, want none: two edits in four letters", got)
	}
	if got := Nearest("max_bacth_size", []string{"max_batch_sizes"}); got != "max_batch_sizes" {
		t.Errorf("Nearest(max_bacth_size) = %q, want max_batch_sizes", got)
	}
}

func TestDistance(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"", "", 0}, {"a", "", 1}, {"", "abc", 3}, {"kitten", "sitting", 3}, {"max_batch", "max_bacth", 1}, {"nmae", "name", 1}, {"cuts", "auth", 2},
	} {
		if got := Distance(tc.a, tc.b); got != tc.want {
			t.Errorf("Distance(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}
