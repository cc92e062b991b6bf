package models

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"

	"github.com/ddnn-continuum/ddnn/internal/command"
	"github.com/ddnn-continuum/ddnn/internal/onnx"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/suggest"
)

// Usage is ddnn models' help.
const Usage = `Usage:
  ddnn models check -f FILE           load every tier's model and verify the chain
  ddnn models eval -f FILE [--json]   run the labeled test set through the chain: exits and accuracy per tier
  ddnn models eval -f FILE --sweep    accuracy against exit ratio over a grid of thresholds per tier
  ddnn models eval -f FILE --transform noise=0.3 --last-tier
                                      the same on a transformed test set, and with every sample sent to the last tier

Run 'ddnn models eval -h' for every flag.
`

// Synopses of ddnn models check and eval.
const (
	CheckSynopsis = "models check -f FILE"
	EvalSynopsis  = "models eval -f FILE [--json [--per-sample]] [--sweep] [--images F --labels F] [--transform SPEC] [--last-tier]"
)

// flagsAsCommands are flags of models eval a user may type as a command
// of their own: each is answered with the form that is accepted.
var flagsAsCommands = map[string]string{
	"sweep": "ddnn models eval -f FILE --sweep",
}

// Subcommand is the options of `ddnn models VERB`, with its synopsis. An
// unknown verb is a usage error
// that suggests the nearest one.
func Subcommand(verb string, stderr io.Writer) (opts command.Runner, synopsis string, err error) {
	switch verb {
	case "check":
		return &CheckCommand{}, CheckSynopsis, nil
	case "eval":
		return &EvalCommand{}, EvalSynopsis, nil
	}
	fmt.Fprint(stderr, Usage)
	if form, ok := flagsAsCommands[verb]; ok {
		return nil, "", command.Usagef("unknown models command %q: it is a flag of eval: %s", verb, form)
	}
	if near := suggest.Nearest(verb, []string{"check", "eval"}); near != "" {
		return nil, "", command.Usagef("unknown models command %q; did you mean %q?", verb, near)
	}
	return nil, "", command.Usagef("unknown models command %q", verb)
}

// chainFlags are -f and --ort-lib.
type chainFlags struct {
	File, ORTLib string
}

func (c *chainFlags) flags(fs *flag.FlagSet) {
	command.FileFlag(fs, &c.File)
	onnx.LibFlag(fs, &c.ORTLib)
}

// load reads the pipeline and initializes ONNX Runtime.
func (c *chainFlags) load() (*pipeline.Pipeline, error) {
	p, err := command.LoadPipeline(c.File)
	if err != nil {
		return nil, err
	}
	if _, err := onnx.Init(c.ORTLib); err != nil {
		return nil, err
	}
	return p, nil
}

// CheckCommand is ddnn models check with its flags.
type CheckCommand struct {
	chainFlags
}

// Flags binds o to ddnn models check's flags.
func (o *CheckCommand) Flags(fs *flag.FlagSet) { o.flags(fs) }

// Run checks the chain and prints the report; warnings go to stderr.
func (o *CheckCommand) Run(_ context.Context, stdout, stderr io.Writer) error {
	p, err := o.load()
	if err != nil {
		return err
	}
	rep, err := Check(p)
	rep.Print(stdout)
	if err != nil {
		return fmt.Errorf("pipeline %q: chain check failed:\n%w", p.Name, err)
	}
	for _, w := range Warnings(p) {
		fmt.Fprintf(stderr, "warning: %s\n", w)
	}
	fmt.Fprintf(stdout, "pipeline %q: %d tiers, chain ok\n", p.Name, len(p.Tiers))
	return nil
}

// EvalCommand is ddnn models eval with its flags.
type EvalCommand struct {
	chainFlags
	JSON, PerSample, Sweep, LastTier bool
	Images, Labels, Transform        string
}

// Flags binds o to ddnn models eval's flags.
func (o *EvalCommand) Flags(fs *flag.FlagSet) {
	o.flags(fs)
	fs.BoolVar(&o.JSON, "json", false, "print JSON instead of a table")
	fs.BoolVar(&o.PerSample, "per-sample", false, "with --json: also each sample's exit tier and class (\"decisions\", in test-set order)")
	fs.BoolVar(&o.Sweep, "sweep", false, "print accuracy against exit ratio over a grid of thresholds per tier")
	fs.StringVar(&o.Images, "images", "", "test images, gzipped IDX or NumPy .npy (default: the pipeline's eval.images)")
	fs.StringVar(&o.Labels, "labels", "", "test labels, gzipped IDX or NumPy .npy (default: the pipeline's eval.labels)")
	fs.StringVar(&o.Transform, "transform", "", "transform the uint8 test images first: parts joined by '+' from clean, noise=S (σ as a fraction of 255, seeded per sample), seed=N, contrast=K (around the image mean), brightness=B, invert, shift=N (pixels right, < 0 left), classes=A/B/... (keep those labels); see docs/drift.md")
	fs.BoolVar(&o.LastTier, "last-tier", false, "also the accuracy with every sample sent to the last tier (no early exit)")
}

// Run runs the test set through the chain and prints the result.
func (o *EvalCommand) Run(_ context.Context, stdout, _ io.Writer) error {
	tr, err := ParseTransform(o.Transform)
	if err != nil {
		return command.Usagef("--transform: %w", err)
	}
	p, err := o.load()
	if err != nil {
		return err
	}
	img, lab := o.Images, o.Labels
	if img == "" {
		img = p.Path(p.Eval.Images)
	}
	if lab == "" {
		lab = p.Path(p.Eval.Labels)
	}
	if img == "" || lab == "" {
		return command.Usagef("no test set: set eval.images and eval.labels in %s or pass --images and --labels", o.File)
	}
	ds, err := LoadDataset(img, lab)
	if err != nil {
		return err
	}
	if !tr.IsClean() {
		if ds, err = tr.Apply(ds); err != nil {
			return err
		}
	}
	if _, err := Check(p); err != nil {
		return fmt.Errorf("pipeline %q: chain check failed (run 'ddnn models check'):\n%w", p.Name, err)
	}
	chain, err := OpenChain(p)
	if err != nil {
		return err
	}
	defer chain.Close()
	res, err := chain.Eval(ds)
	if err != nil {
		return err
	}
	if !o.PerSample {
		res.Decisions = nil
	}
	if !tr.IsClean() {
		res.Transform = tr.String()
	}
	if o.LastTier {
		last, err := chain.LastTier(ds)
		if err != nil {
			return err
		}
		res.LastTierAccuracy = &last.Accuracy
	}
	var sw []SweepTier
	if o.Sweep {
		if sw, err = chain.Sweep(ds); err != nil {
			return err
		}
	}
	if o.JSON {
		enc := json.NewEncoder(stdout)
		if !o.Sweep {
			return enc.Encode(res)
		}
		return enc.Encode(struct {
			*Result
			Sweep []SweepTier `json:"sweep"`
		}{res, sw})
	}
	res.Print(stdout)
	if o.Sweep {
		fmt.Fprintln(stdout)
		PrintSweep(stdout, sw)
	}
	return nil
}
