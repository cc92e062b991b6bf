package proc

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// childOOMRaise is how much higher a child's oom_score_adj is than the
// supervisor's. The kernel scores a process by its share of the memory it
// may use (0 to 1000) plus its oom_score_adj, so a raise of 1000 makes
// any child score above the supervisor, however small the child and large
// the supervisor. The sum is capped at the kernel's maximum, 1000: a
// supervisor that runs above 0 keeps a smaller lead.
const childOOMRaise = 1000

// maxOOMScoreAdj is the kernel's highest oom_score_adj.
const maxOOMScoreAdj = 1000

// raiseOOMScore sets pid's oom_score_adj childOOMRaise above this
// process' own. Raising it needs no privilege (lowering it below what a
// process started with does). It runs right after the child's exec, so
// the child spends only its first instant at the supervisor's score. A
// child that already exited is not an error: its restart gets it.
func raiseOOMScore(pid int) error {
	own, err := readOOMScoreAdj("self")
	if err != nil {
		return err
	}
	want := min(own+childOOMRaise, maxOOMScoreAdj)
	path := fmt.Sprintf("/proc/%d/oom_score_adj", pid)
	err = os.WriteFile(path, []byte(strconv.Itoa(want)), 0)
	if errors.Is(err, syscall.ESRCH) || errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("oom_score_adj %d: %w", want, err)
	}
	return nil
}

// readOOMScoreAdj reads the oom_score_adj of the process named (a pid or
// "self").
func readOOMScoreAdj(name string) (int, error) {
	path := "/proc/" + name + "/oom_score_adj"
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("oom_score_adj: %w", err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	return n, nil
}
