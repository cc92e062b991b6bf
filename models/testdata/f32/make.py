#!/usr/bin/python3
"""Builds the float32 test pipeline in this directory and scores it offline.

A tiny two-tier DDNN on 16 float32 features and 4 classes:

  edge.onnx   x[N,16] -> h = relu(x W1 + b1)[N,12] -> exit_logits[N,4],
              exit_probs = softmax(exit_logits), forward = h
  cloud.onnx  h[N,12] -> relu(h W2 + b2)[N,8] -> logits[N,4]

images.npy (float32, [300, 16]) holds values far outside [0, 1] and not
integers, so any rescaling on the way to the model changes the result;
labels.npy is int64 [300]. The heads are fitted by least squares, which is
enough for a model that is right most of the time and exits at both tiers.

The script then evaluates the pipeline (pipeline.yaml) in pure NumPy, with
the rule of inference/policy.go: the edge exits a sample when its top-1
probability >= the threshold (first index wins a tie), the cloud takes every
other sample and picks the top-1 class of softmax(logits). It writes
expected.json: accuracy, exits per tier, and each sample's class and tier.
Samples whose decision sits within 1e-4 of a threshold or of a tie are
dropped while generating, so float rounding differences between NumPy and
ONNX Runtime cannot flip a decision.

Run with: /usr/bin/python3 models/testdata/f32/make.py (numpy, onnx).
"""
import json
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
FEATURES, HIDDEN, HIDDEN2, CLASSES = 16, 12, 8, 4
SAMPLES = 300
THRESHOLD = 0.9  # edge exit.threshold in pipeline.yaml (max_prob)
MARGIN = 1e-4

rng = np.random.default_rng(12)


def softmax(z):
    z = z.astype(np.float64)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


CENTERS = rng.normal(0.0, 1.0, (CLASSES, FEATURES))


def data(n):
    y = rng.integers(0, CLASSES, n)
    x = CENTERS[y] + rng.normal(0.0, 0.7, (n, FEATURES))
    # Raw sensor units: offset and scaled, far from [0, 1], never integers.
    x = x * 37.3 + 12.7
    return x.astype(np.float32), y.astype(np.int64)


def fit(h, y):
    """Least-squares head from features h to one-hot y, as float32."""
    a = np.hstack([h, np.ones((len(h), 1))]).astype(np.float64)
    t = np.eye(CLASSES)[y] * 8.0 - 4.0
    w, *_ = np.linalg.lstsq(a, t, rcond=None)
    return w[:-1].astype(np.float32), w[-1].astype(np.float32)


x_train, y_train = data(2000)
scale = np.float32(1.0 / 37.3)
w1 = (rng.normal(0.0, 1.0, (FEATURES, HIDDEN)) * scale).astype(np.float32)
b1 = rng.normal(0.0, 0.5, HIDDEN).astype(np.float32)
h_train = np.maximum(x_train @ w1 + b1, 0)
we, be = fit(h_train, y_train)
w2 = rng.normal(0.0, 0.6, (HIDDEN, HIDDEN2)).astype(np.float32)
b2 = rng.normal(0.0, 0.3, HIDDEN2).astype(np.float32)
wc, bc = fit(np.maximum(h_train @ w2 + b2, 0), y_train)


def forward(x):
    h = np.maximum(x @ w1 + b1, np.float32(0))
    exit_logits = h @ we + be
    logits = np.maximum(h @ w2 + b2, np.float32(0)) @ wc + bc
    return softmax(exit_logits), softmax(logits)


def robust(p):
    top = np.sort(p, axis=1)
    return top[:, -1] - top[:, -2] > MARGIN


# The test set: candidates whose decisions are clear of thresholds and ties.
x, y = data(3 * SAMPLES)
edge_p, cloud_p = forward(x)
keep = robust(edge_p) & robust(cloud_p) & (np.abs(edge_p.max(axis=1) - THRESHOLD) > MARGIN)
x, y = x[keep][:SAMPLES], y[keep][:SAMPLES]
assert len(x) == SAMPLES

edge_p, cloud_p = forward(x)
exit_edge = edge_p.max(axis=1) >= THRESHOLD
pred = np.where(exit_edge, edge_p.argmax(axis=1), cloud_p.argmax(axis=1))
tier = np.where(exit_edge, "edge", "cloud")
expected = {
    "samples": SAMPLES,
    "correct": int((pred == y).sum()),
    "accuracy": float((pred == y).mean()),
    "exits": {"edge": int(exit_edge.sum()), "cloud": int((~exit_edge).sum())},
    "decisions": [{"tier": str(t), "class": int(c)} for t, c in zip(tier, pred)],
}


def dense(name, x, w, b, out):
    return [
        helper.make_node("MatMul", [x, name + "_w"], [name + "_mm"]),
        helper.make_node("Add", [name + "_mm", name + "_b"], [out]),
    ], [numpy_helper.from_array(w, name + "_w"), numpy_helper.from_array(b, name + "_b")]


def model(name, inputs, outputs, nodes, inits):
    g = helper.make_graph(nodes, name, inputs, outputs, inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], producer_name="ddnn models/testdata/f32/make.py")
    m.ir_version = 7
    onnx.checker.check_model(m)
    onnx.save(m, os.path.join(HERE, name + ".onnx"))


def vi(name, n):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", n])


n1, i1 = dense("l1", "x", w1, b1, "pre")
ne, ie = dense("exit", "forward", we, be, "exit_logits")
model("edge", [vi("x", FEATURES)], [vi("exit_logits", CLASSES), vi("exit_probs", CLASSES), vi("forward", HIDDEN)],
      n1 + [helper.make_node("Relu", ["pre"], ["forward"])] + ne + [helper.make_node("Softmax", ["exit_logits"], ["exit_probs"], axis=-1)],
      i1 + ie)
n2, i2 = dense("l2", "h", w2, b2, "pre2")
nc, ic = dense("head", "h2", wc, bc, "logits")
model("cloud", [vi("h", HIDDEN)], [vi("logits", CLASSES)],
      n2 + [helper.make_node("Relu", ["pre2"], ["h2"])] + nc, i2 + ic)

np.save(os.path.join(HERE, "images.npy"), x)
np.save(os.path.join(HERE, "labels.npy"), y)
with open(os.path.join(HERE, "expected.json"), "w") as f:
    # One decision a line, so a diff shows which samples changed.
    decisions = ",\n  ".join(json.dumps(d) for d in expected.pop("decisions"))
    f.write(json.dumps(expected, indent=1)[:-2] + ',\n "decisions": [\n  ' + decisions + "\n ]\n}\n")
print("accuracy %.4f, exits %s" % (expected["accuracy"], expected["exits"]))
