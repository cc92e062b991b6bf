package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/ddnn-continuum/ddnn/internal/onnx"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/suggest"
	"github.com/ddnn-continuum/ddnn/models"
)

const modelsUsage = `Usage:
  ddnn models check -f FILE           load every tier's model and verify the chain
  ddnn models eval -f FILE [--json]   run the labeled test set through the chain: exits and accuracy per tier
  ddnn models eval -f FILE --sweep    accuracy against exit ratio over a grid of thresholds per tier

Run 'ddnn models eval -h' for every flag.
`

// modelsFlagsAsCommands are flags of models eval a user may type as a
// command of their own: each is answered with the form that is accepted.
var modelsFlagsAsCommands = map[string]string{
	"sweep": "ddnn models eval -f FILE --sweep",
}

func runModels(_ context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, modelsUsage)
		return errUsage
	}
	switch args[0] {
	case "check":
		return runModelsCheck(args[1:], stdout, stderr)
	case "eval":
		return runModelsEval(args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, modelsUsage)
		return nil
	default:
		fmt.Fprint(stderr, modelsUsage)
		if form, ok := modelsFlagsAsCommands[args[0]]; ok {
			return fmt.Errorf("%w: unknown models command %q: it is a flag of eval: %s", errUsage, args[0], form)
		}
		if near := suggest.Nearest(args[0], []string{"check", "eval"}); near != "" {
			return fmt.Errorf("%w: unknown models command %q; did you mean %q?", errUsage, args[0], near)
		}
		return fmt.Errorf("%w: unknown models command %q", errUsage, args[0])
	}
}

// pipelineFlags adds -f and --ort-lib.
type pipelineFlags struct {
	file   *string
	ortLib *string
}

func addPipelineFlags(fs interface {
	String(name, value, usage string) *string
}) pipelineFlags {
	return pipelineFlags{
		file:   fileFlag(fs),
		ortLib: fs.String("ort-lib", "", "ONNX Runtime shared library (default: $"+onnx.EnvVar+" or the project's install path)"),
	}
}

// load reads the pipeline and initializes ONNX Runtime.
func (pf pipelineFlags) load() (*pipeline.Pipeline, error) {
	p, err := loadPipeline(*pf.file)
	if err != nil {
		return nil, err
	}
	if _, err := onnx.Init(*pf.ortLib); err != nil {
		return nil, err
	}
	return p, nil
}

func runModelsCheck(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("models check", "models check -f FILE", stderr)
	pf := addPipelineFlags(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	p, err := pf.load()
	if err != nil {
		return err
	}
	rep, err := models.Check(p)
	rep.Print(stdout)
	if err != nil {
		return fmt.Errorf("pipeline %q: chain check failed:\n%w", p.Name, err)
	}
	for _, w := range models.Warnings(p) {
		fmt.Fprintf(stderr, "warning: %s\n", w)
	}
	fmt.Fprintf(stdout, "pipeline %q: %d tiers, chain ok\n", p.Name, len(p.Tiers))
	return nil
}

func runModelsEval(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("models eval", "models eval -f FILE [--json [--per-sample]] [--sweep] [--images F --labels F]", stderr)
	pf := addPipelineFlags(fs)
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	perSample := fs.Bool("per-sample", false, "with --json: also each sample's exit tier and class (\"decisions\", in test-set order)")
	sweep := fs.Bool("sweep", false, "print accuracy against exit ratio over a grid of thresholds per tier")
	images := fs.String("images", "", "test images, gzipped IDX or NumPy .npy (default: the pipeline's eval.images)")
	labels := fs.String("labels", "", "test labels, gzipped IDX or NumPy .npy (default: the pipeline's eval.labels)")
	if err := parse(fs, args); err != nil {
		return err
	}
	p, err := pf.load()
	if err != nil {
		return err
	}
	img, lab := *images, *labels
	if img == "" {
		img = p.Path(p.Eval.Images)
	}
	if lab == "" {
		lab = p.Path(p.Eval.Labels)
	}
	if img == "" || lab == "" {
		return fmt.Errorf("%w: no test set: set eval.images and eval.labels in %s or pass --images and --labels", errUsage, *pf.file)
	}
	ds, err := models.LoadDataset(img, lab)
	if err != nil {
		return err
	}
	if _, err := models.Check(p); err != nil {
		return fmt.Errorf("pipeline %q: chain check failed (run 'ddnn models check'):\n%w", p.Name, err)
	}
	chain, err := models.OpenChain(p)
	if err != nil {
		return err
	}
	defer chain.Close()
	res, err := chain.Eval(ds)
	if err != nil {
		return err
	}
	if !*perSample {
		res.Decisions = nil
	}
	var sw []models.SweepTier
	if *sweep {
		if sw, err = chain.Sweep(ds); err != nil {
			return err
		}
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		if !*sweep {
			return enc.Encode(res)
		}
		return enc.Encode(struct {
			*models.Result
			Sweep []models.SweepTier `json:"sweep"`
		}{res, sw})
	}
	res.Print(stdout)
	if *sweep {
		fmt.Fprintln(stdout)
		models.PrintSweep(stdout, sw)
	}
	return nil
}
