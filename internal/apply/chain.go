package apply

import (
	"fmt"
	"strings"

	"github.com/ddnn-continuum/ddnn/internal/onnx"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/models"
)

// chainReason starts the reason a model change is refused for when the
// new chain does not pass models.Check.
const chainReason = "the tiers' models do not fit together (as ddnn models check reports): "

// refuseBrokenChain refuses every model change of plan when next's chain
// does not pass models.Check, the check `ddnn models check` and the start
// of `ddnn up` run: every tier's model read and matched to its YAML, the
// first tier's input against input.shape, each forward output against the
// next tier's input. A tier whose model does not take what the tier before
// it forwards would dead-letter every record it gets. A plan that changes
// no model is not checked: the running chain passed at start.
func refuseBrokenChain(plan *Plan, next *pipeline.Pipeline) {
	var changed []Change
	for _, r := range plan.Rollouts {
		for _, c := range r.Changes {
			if strings.HasSuffix(c.Path, ".model") {
				changed = append(changed, c)
			}
		}
	}
	if len(changed) == 0 {
		return
	}
	err := checkChain(next)
	if err == nil {
		return
	}
	why := chainReason + strings.ReplaceAll(err.Error(), "\n", "; ")
	for _, c := range changed {
		plan.Refused = append(plan.Refused, Change{Path: c.Path, Old: c.Old, New: c.New, Reason: why})
	}
}

// checkChain runs models.Check on p, with ONNX Runtime initialized as
// already done in this process or from its default location.
func checkChain(p *pipeline.Pipeline) error {
	if _, err := onnx.Init(""); err != nil {
		return fmt.Errorf("the models cannot be read to check them: %w", err)
	}
	_, err := models.Check(p)
	return err
}
