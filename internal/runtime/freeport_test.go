package runtime

import "testing"

// The kernel hands a just-closed port out again; FreePort does not, for
// its last recentPorts answers.
func TestFreePortNeverTwice(t *testing.T) {
	seen := map[int]bool{}
	for range recentPorts {
		p, err := FreePort()
		if err != nil {
			t.Fatal(err)
		}
		if seen[p] {
			t.Fatalf("port %d handed out twice in %d calls", p, len(seen)+1)
		}
		seen[p] = true
	}
}
