package proctest

import (
	"os"
	"os/exec"
	"slices"
	"testing"
)

const childEnv = "DDNN_PROCTEST_CHILD"

func TestMain(m *testing.M) {
	Main(m, childEnv, func(args []string) int {
		if slices.Equal(args, []string{"exit", "7"}) {
			return 7
		}
		return 1
	})
}

func TestChildren(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "exit", "7")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	// Exited or not, it is a child until it is reaped.
	if got, err := Children(); err != nil || !slices.Equal(got, []int{pid}) {
		t.Errorf("children %v (%v), want [%d]", got, err, pid)
	}
	if Gone(pid) {
		t.Errorf("pid %d gone before it was reaped", pid)
	}
	err = cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 7 {
		t.Fatalf("the child exited with %v, want the fake's code 7", err)
	}
	WaitFor(t, "the child gone", func() bool { return Gone(pid) })
	if got, err := Children(); err != nil || len(got) != 0 {
		t.Errorf("children %v (%v) after the child was reaped", got, err)
	}
}

func TestFreeAddrNeverTwice(t *testing.T) {
	seen := map[string]bool{}
	for range 200 {
		addr := FreeAddr(t)
		if seen[addr] {
			t.Fatalf("%s given twice", addr)
		}
		seen[addr] = true
	}
}
