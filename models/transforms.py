#!/usr/bin/env python3
"""Input corruptions of the sample's images: training augmentation and a per-transform eval.

Used by train.py for --augment (see its docstring), and run on its own to
score chains on corrupted test images:

    /usr/bin/python3 models/transforms.py \\
        --chain shipped=models/edge.onnx,models/fog.onnx,models/cloud.onnx \\
        --chain robust=models/edge.onnx,models/testdata/robust/fog.onnx,models/testdata/robust/cloud.onnx

prints, per transform and chain, each tier's own accuracy (every sample run
to that tier) and the cascade's accuracy and edge exit ratio at the shipped
thresholds (max_prob, edge 0.9, fog 0.6) and with the edge threshold raised
(0.99, and 1.01: no edge exit), as Markdown table rows. The images are the
first 2,000 of the test set (models/data, as `ddnn models eval` reads them);
the tiers run in the numpy ONNX interpreter of graphs.py.

The transforms, on uint8 images (0..255), each result rounded and clamped to
0..255 (EVAL_TRANSFORMS):
  noise=S        add Gaussian noise of standard deviation S*255 (S=0.3: 76.5),
                 drawn from numpy's default_rng(seed 0)
  brightness=B   add B
  contrast=C     scale the distance from mid-grey: 128 + C*(x-128)
  invert         255 - x
  shift=P        move the image P pixels right and P pixels down, zeros in
"""

import argparse
import os
import sys

import numpy as np
import torch

from graphs import run_onnx_numpy

# The corruptions --eval-transforms scores, in table order.
EVAL_TRANSFORMS = (("clean", None), ("noise", 0.3), ("brightness", 80.0),
                   ("contrast", 0.4), ("invert", None), ("shift", 4))
# --augment kinds: the corruption applied to a training image in 0..1 floats.
AUGMENT_KINDS = ("noise", "brightness")
DEFAULT_CLEAN = 0.5
# Shipped thresholds (deploy/pipeline.yaml) and the raised edge thresholds.
FOG_THRESHOLD = 0.6
EDGE_THRESHOLDS = (0.9, 0.99, 1.01)


# --------------------------------------------------------------------------- eval transforms

def apply_u8(images, name, arg, seed=0):
    """images uint8 [N,28,28] transformed by name (see the module doc), as uint8."""
    x = images.astype(np.float64)
    if name == "clean":
        pass
    elif name == "noise":
        x = x + np.random.default_rng(seed).normal(0.0, arg * 255.0, size=x.shape)
    elif name == "brightness":
        x = x + arg
    elif name == "contrast":
        x = 128.0 + arg * (x - 128.0)
    elif name == "invert":
        x = 255.0 - x
    elif name == "shift":
        out = np.zeros_like(x)
        out[:, arg:, arg:] = x[:, :-arg, :-arg]
        x = out
    else:
        raise ValueError("unknown transform %r" % name)
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def label(name, arg):
    return name if arg is None else "%s=%g" % (name, arg)


# --------------------------------------------------------------------------- augmentation

def parse_augment(spec):
    """noise=S,brightness=B[,clean=P] -> {"noise": S, "brightness": B, "clean": P}.

    Each training image stays clean with probability clean (default 0.5);
    otherwise it gets one of the listed kinds, chosen uniformly.
    """
    out = {"clean": DEFAULT_CLEAN}
    for item in spec.split(","):
        key, sep, value = item.partition("=")
        if key not in AUGMENT_KINDS + ("clean",) or not sep:
            sys.exit("--augment: %r is not KIND=VALUE (kinds: %s, clean)" % (item, ", ".join(AUGMENT_KINDS)))
        try:
            out[key] = float(value)
        except ValueError:
            sys.exit("--augment: %s=%r is not a number" % (key, value))
    if not 0.0 <= out["clean"] < 1.0:
        sys.exit("--augment: clean=%g is outside [0, 1)" % out["clean"])
    if not any(k in out for k in AUGMENT_KINDS):
        sys.exit("--augment: no kind given (kinds: %s)" % ", ".join(AUGMENT_KINDS))
    return out


class Augmenter:
    """Corrupts training batches (float32 [N,1,28,28] in 0..1) per parse_augment's spec.

    Its own torch generator (seeded from the training seed) draws the
    choices, so the batch order is the same as without augmentation.
    """

    def __init__(self, spec, seed):
        self.spec = spec
        self.kinds = [k for k in AUGMENT_KINDS if k in spec]
        self.gen = torch.Generator()
        self.gen.manual_seed(seed + 10007)

    def __call__(self, xb):
        n = xb.shape[0]
        pick = torch.randint(0, len(self.kinds), (n,), generator=self.gen)
        dirty = torch.rand(n, generator=self.gen) >= self.spec["clean"]
        out = xb.clone()
        for i, kind in enumerate(self.kinds):
            m = dirty & (pick == i)
            if not bool(m.any()):
                continue
            if kind == "noise":
                noise = torch.randn(out[m].shape, generator=self.gen) * self.spec["noise"]
                out[m] = out[m] + noise
            else:
                out[m] = out[m] + self.spec["brightness"] / 255.0
        return out.clamp_(0.0, 1.0)


# --------------------------------------------------------------------------- chain eval

def run_chain(paths, x):
    """Each tier's exit probabilities for images x (float32 [N,1,28,28])."""
    edge = run_onnx_numpy(paths[0], {"image": x})
    fog = run_onnx_numpy(paths[1], {"features": edge["forward"]})
    cloud = run_onnx_numpy(paths[2], {"features": fog["forward"]})
    return [edge["exit_probs"], fog["exit_probs"], cloud["exit_probs"]]


def cascade(probs, labels, edge_t):
    """Accuracy and edge exit ratio with max_prob at edge_t, fog at FOG_THRESHOLD."""
    at_edge = probs[0].max(1).astype(np.float64) >= edge_t
    at_fog = ~at_edge & (probs[1].max(1).astype(np.float64) >= FOG_THRESHOLD)
    pred = np.where(at_edge, probs[0].argmax(1),
                    np.where(at_fog, probs[1].argmax(1), probs[2].argmax(1)))
    return float((pred == labels).mean()), float(at_edge.mean())


def parse_chain(spec):
    name, sep, files = spec.partition("=")
    paths = files.split(",")
    if not sep or len(paths) != 3:
        sys.exit("--chain: %r is not NAME=EDGE,FOG,CLOUD" % spec)
    for p in paths:
        if not os.path.exists(p):
            sys.exit("--chain %s: %s: no such file" % (name, p))
    return name, paths


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--chain", action="append", required=True, metavar="NAME=EDGE,FOG,CLOUD",
                    help="a chain's three ONNX files (repeat for several chains)")
    ap.add_argument("--data", default="models/data", metavar="DIR",
                    help="directory of test-2000-{images,labels}-idx*-ubyte.gz (default: models/data)")
    args = ap.parse_args()
    from train import read_idx_gz, scale
    images = read_idx_gz(os.path.join(args.data, "test-2000-images-idx3-ubyte.gz"))
    labels = read_idx_gz(os.path.join(args.data, "test-2000-labels-idx1-ubyte.gz")).astype(np.int64)
    chains = [parse_chain(c) for c in args.chain]
    head = " | ".join("edge %g" % t if t <= 1 else "no edge exit" for t in EDGE_THRESHOLDS)
    print("| transform | chain | edge | fog | cloud | %s |" % head)
    print("|---|---|---|---|---|%s" % ("---|" * len(EDGE_THRESHOLDS)))
    for name, arg in EVAL_TRANSFORMS:
        x = scale(apply_u8(images, name, arg))
        for chain, paths in chains:
            probs = run_chain(paths, x)
            tiers = " | ".join("%.4f" % (p.argmax(1) == labels).mean() for p in probs)
            casc = " | ".join("%.4f (%.0f%%)" % (a, 100 * r)
                              for a, r in (cascade(probs, labels, t) for t in EDGE_THRESHOLDS))
            print("| %s | %s | %s | %s |" % (label(name, arg), chain, tiers, casc))


if __name__ == "__main__":
    main()
