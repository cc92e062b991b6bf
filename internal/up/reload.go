package up

import (
	"context"
	"syscall"

	"github.com/ddnn-continuum/ddnn/internal/command"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
)

// reloadOnSIGHUP makes each SIGHUP until ctx ends re-read the pipeline
// file and, when it loads, forward SIGHUP to the site's children that
// reload (the funnel, connectors, uplinks and the process runtime's
// replicas), each of which applies what it can change live and logs what
// it cannot. A file that does not load is logged and forwarded to none.
func (s *Supervisor) reloadOnSIGHUP(ctx context.Context) {
	command.Reloader{
		Load:  func() (*pipeline.Pipeline, error) { return command.LoadPipeline(s.cfg.File) },
		Apply: func(*pipeline.Pipeline) error { s.forwardSIGHUP(); return nil },
		Log:   s.log,
	}.OnSIGHUP(ctx)
}

// forwardSIGHUP sends SIGHUP to every running child that reloads on it,
// logging each. The monolith does not reload: it is left out, and said
// so. So is a child not ready yet: until then it may not handle SIGHUP
// (which would stop it), and it read the file as it started.
func (s *Supervisor) forwardSIGHUP() {
	s.mu.Lock()
	monolith := s.monolith
	s.mu.Unlock()
	for _, c := range s.children() {
		if c == monolith {
			s.log.Warn("reload: SIGHUP not forwarded: the monolith applies a changed file at a restart", "child", c.Name())
			continue
		}
		if !c.Ready() {
			s.log.Warn("reload: SIGHUP not forwarded: the child is not ready", "child", c.Name(), "pid", c.PID())
			continue
		}
		if err := c.Signal(syscall.SIGHUP); err != nil {
			s.log.Warn("reload: SIGHUP not forwarded", "child", c.Name(), "err", err)
			continue
		}
		s.log.Info("reload: SIGHUP forwarded", "child", c.Name(), "pid", c.PID())
	}
}
