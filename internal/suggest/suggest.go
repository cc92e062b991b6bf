// Package suggest finds the name a user most likely meant when they typed
// one that does not exist ("did you mean threshold?"). It owns only the
// string distance; callers word their own messages.
package suggest

// Nearest is the closest candidate to s (the first of equals) when it is
// close enough to be a typo: at most one edit for names up to five
// bytes, two for longer ones. Otherwise, and for a candidate equal to s,
// it is "".
func Nearest(s string, candidates []string) string {
	limit := 1
	if len(s) > 5 {
		limit = 2
	}
	best, bestD := "", limit+1
	for _, c := range candidates {
		if d := Distance(s, c); d > 0 && d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

// Distance is the number of single-byte insertions, deletions,
// substitutions and swaps of neighbours that turn a into b (the optimal
// string alignment distance: "nmae" is one swap from "name").
func Distance(a, b string) int {
	// d[i][j] is the distance between a[:i] and b[:j]; three rows suffice.
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev = prev, cur
	}
	return prev[len(b)]
}
