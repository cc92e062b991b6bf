package runtime

import (
	"errors"
	"slices"
	"testing"
)

// TestScale: missing replicas are started, the surplus drained newest
// first, and a failed start ends the scaling with its error.
func TestScale(t *testing.T) {
	for _, tc := range []struct {
		name       string
		live       []string
		n          int
		failAt     int // the start that fails, 1-based; 0 for none
		wantStarts int
		wantDrain  []string
		wantErr    bool
	}{
		{"up", []string{"a"}, 3, 0, 2, nil, false},
		{"down", []string{"a", "b", "c", "d"}, 1, 0, 0, []string{"d", "c", "b"}, false},
		{"steady", []string{"a", "b"}, 2, 0, 0, nil, false},
		{"to zero", []string{"a", "b"}, 0, 0, 0, []string{"b", "a"}, false},
		{"start fails", nil, 3, 2, 2, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			starts := 0
			var drained []string
			err := Scale(tc.live, tc.n, func() error {
				starts++
				if starts == tc.failAt {
					return errors.New("no port")
				}
				return nil
			}, func(r string) { drained = append(drained, r) })
			if (err != nil) != tc.wantErr || starts != tc.wantStarts || !slices.Equal(drained, tc.wantDrain) {
				t.Errorf("err %v, %d starts, drained %v; want error %v, %d starts, drained %v", err, starts, drained, tc.wantErr, tc.wantStarts, tc.wantDrain)
			}
		})
	}
}
