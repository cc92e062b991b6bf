package runtime

// Scale is the Scale of a runtime that keeps its replicas in memory: it
// brings live, the replicas not draining in the order they started, to n,
// calling start once per missing replica (stopping at its first error) and
// drain on each surplus one, newest first.
func Scale[R any](live []R, n int, start func() error, drain func(R)) error {
	for i := len(live); i < n; i++ {
		if err := start(); err != nil {
			return err
		}
	}
	for i := len(live) - 1; i >= n; i-- {
		drain(live[i])
	}
	return nil
}
