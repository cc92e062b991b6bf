package models

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/ddnn-continuum/ddnn/internal/command"
)

// evalCommand runs ddnn models eval with args on the shipped pipeline and
// returns its JSON result.
func evalCommand(t *testing.T, args ...string) (*Result, error) {
	t.Helper()
	o := &EvalCommand{}
	fs := flag.NewFlagSet("eval", flag.ContinueOnError)
	o.Flags(fs)
	if err := fs.Parse(append([]string{"-f", "../deploy/pipeline.yaml", "--json", "--per-sample"}, args...)); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := o.Run(context.Background(), &out, io.Discard); err != nil {
		return nil, err
	}
	var r Result
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("%v in %s", err, out.String())
	}
	return &r, nil
}

// TestEvalTransformFlag runs models eval --transform on the first 60
// shipped test images and checks it decides exactly what the chain decides
// on the transformed images, which differs from the clean decisions.
func TestEvalTransformFlag(t *testing.T) {
	p := load(t, "../deploy/pipeline.yaml")
	ds := shippedData(t, p)
	ds.Samples, ds.Labels = ds.Samples[:60], ds.Labels[:60]
	dir := t.TempDir()
	images := writeFile(t, dir, "images.gz", gz(idx([]uint32{60, 28, 28}, bytes.Join(ds.Samples, nil))))
	labels := writeFile(t, dir, "labels.gz", gz(idx([]uint32{60}, byteLabels(ds.Labels))))
	c := openChain(t, p)
	clean := eval(t, c, ds)

	for _, spec := range []string{"invert", "noise=0.3+brightness=40", "shift=-4+classes=1/7"} {
		t.Run(spec, func(t *testing.T) {
			got, err := evalCommand(t, "--images", images, "--labels", labels, "--transform", spec, "--last-tier")
			if err != nil {
				t.Fatal(err)
			}
			tr := mustTransform(t, spec)
			tds, err := tr.Apply(ds)
			if err != nil {
				t.Fatal(err)
			}
			want := eval(t, c, tds)
			if got.Transform != tr.String() || got.Samples != len(tds.Samples) || got.Accuracy != want.Accuracy || !slices.Equal(got.Decisions, want.Decisions) {
				t.Errorf("eval --transform %s: transform %q, %d samples, accuracy %v, decisions %v;\nwant %q, %d, %v, %v", spec, got.Transform, got.Samples, got.Accuracy, got.Decisions, tr, len(tds.Samples), want.Accuracy, want.Decisions)
			}
			if tr.classes == nil && slices.Equal(got.Decisions, clean.Decisions) {
				t.Errorf("eval --transform %s decided as on the clean images", spec)
			}
			// Every sample sent to the last tier: its class is the argmax
			// of the last tier's scores.
			sc, err := c.score(tds)
			if err != nil {
				t.Fatal(err)
			}
			right := 0
			for j, label := range tds.Labels {
				s := sc.scores[len(sc.scores)-1][j]
				if top := slices.Index(s, slices.Max(s)); top == label {
					right++
				}
			}
			wantLast := float64(right) / float64(len(tds.Labels))
			if got.LastTierAccuracy == nil {
				t.Errorf("eval --transform %s --last-tier: no last-tier accuracy", spec)
			} else if *got.LastTierAccuracy != wantLast {
				t.Errorf("eval --transform %s --last-tier: last-tier accuracy %v, want %v", spec, *got.LastTierAccuracy, wantLast)
			}
		})
	}

	// Without --transform and --last-tier, neither shows in the result.
	got, err := evalCommand(t, "--images", images, "--labels", labels)
	if err != nil {
		t.Fatal(err)
	}
	if got.Transform != "" || got.LastTierAccuracy != nil || !slices.Equal(got.Decisions, clean.Decisions) {
		t.Errorf("eval without --transform: transform %q, last-tier %v, decisions differ %v", got.Transform, got.LastTierAccuracy, !slices.Equal(got.Decisions, clean.Decisions))
	}

	for _, tc := range []struct {
		spec, want string
		usage      bool
	}{
		{"brightnes=80", `--transform: transform "brightnes=80": part "brightnes=80": unknown transform "brightnes"; did you mean "brightness"?`, true},
		{"classes=99", `transform "classes=99" keeps none of the 60 test samples`, false},
	} {
		_, err := evalCommand(t, "--images", images, "--labels", labels, "--transform", tc.spec)
		if err == nil || !strings.Contains(err.Error(), tc.want) || errors.Is(err, command.ErrUsage) != tc.usage {
			t.Errorf("--transform %s: error %v, want %q (usage error: %v)", tc.spec, err, tc.want, tc.usage)
		}
	}
}

func byteLabels(labels []int) []byte {
	b := make([]byte, len(labels))
	for i, l := range labels {
		b[i] = byte(l)
	}
	return b
}
