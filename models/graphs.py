"""The sample DDNN's tiers as torch modules, and their ONNX graphs.

Used by train.py (see its docstring): the modules it trains, their export
to one ONNX graph per tier, a small numpy interpreter that cross-checks an
exported graph, and the loading of a tier's weights back from its graph
(--freeze).
"""

import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

OPSET = 13
TIERS = ("edge", "fog", "cloud")


# --------------------------------------------------------------------------- model

class Edge(nn.Module):
    def __init__(self, width=32):
        super().__init__()
        self.fc = nn.Linear(784, width)
        self.exit = nn.Linear(width, 10)

    def forward(self, image):
        h1 = F.relu(self.fc(torch.flatten(image, 1)))
        return self.exit(h1), h1


class Fog(nn.Module):
    def __init__(self, in_width=32, width=16):
        super().__init__()
        self.fc = nn.Linear(in_width, width)
        self.exit = nn.Linear(width, 10)

    def forward(self, features):
        h2 = F.relu(self.fc(features))
        return self.exit(h2), h2


class Cloud(nn.Module):
    def __init__(self, in_width=16):
        super().__init__()
        self.exit = nn.Linear(in_width, 10)

    def forward(self, features):
        return self.exit(features)


class WithSoftmax(nn.Module):
    """Export wrapper: replaces exit logits with probabilities."""

    def __init__(self, tier, has_forward):
        super().__init__()
        self.tier = tier
        self.has_forward = has_forward

    def forward(self, x):
        if self.has_forward:
            logits, fwd = self.tier(x)
            return torch.softmax(logits, dim=1), fwd
        return torch.softmax(self.tier(x), dim=1)


class Joint(nn.Module):
    def __init__(self, edge_width=32, fog_width=16):
        super().__init__()
        self.edge_width, self.fog_width = edge_width, fog_width
        self.edge = Edge(edge_width)
        self.fog = Fog(edge_width, fog_width)
        self.cloud = Cloud(fog_width)

    def forward(self, image):
        e_logits, h1 = self.edge(image)
        f_logits, h2 = self.fog(h1)
        c_logits = self.cloud(h2)
        return e_logits, f_logits, c_logits


# --------------------------------------------------------------------------- ONNX

def export_onnx(model, out_dir, files=None):
    """Export each tier in files (tier -> file name; default every tier as <tier>.onnx)."""
    import onnx
    model.eval()
    if files is None:
        files = {name: name + ".onnx" for name in TIERS}
    specs = [
        ("edge", WithSoftmax(model.edge, True), torch.zeros(1, 1, 28, 28), "image",
         ["exit_probs", "forward"]),
        ("fog", WithSoftmax(model.fog, True), torch.zeros(1, model.edge_width), "features",
         ["exit_probs", "forward"]),
        ("cloud", WithSoftmax(model.cloud, False), torch.zeros(1, model.fog_width), "features",
         ["exit_probs"]),
    ]
    info = {}
    for name, module, dummy, in_name, out_names in specs:
        if name not in files:
            continue
        path = os.path.join(out_dir, files[name])
        dyn = {n: {0: "batch"} for n in [in_name] + out_names}
        torch.onnx.export(module, (dummy,), path, opset_version=OPSET,
                          input_names=[in_name], output_names=out_names,
                          dynamic_axes=dyn, do_constant_folding=True,
                          export_params=True)
        m = onnx.load(path)
        onnx.checker.check_model(m, full_check=True)

        def desc(v):
            t = v.type.tensor_type
            dims = [d.dim_param if d.dim_param else d.dim_value for d in t.shape.dim]
            return {"name": v.name, "dtype": onnx.TensorProto.DataType.Name(t.elem_type),
                    "shape": dims}
        info[name] = {
            "inputs": [desc(v) for v in m.graph.input],
            "outputs": [desc(v) for v in m.graph.output],
            "ops": [n.op_type for n in m.graph.node],
            "ir_version": m.ir_version,
            "opset": [{"domain": o.domain, "version": o.version} for o in m.opset_import],
            "bytes": os.path.getsize(path),
        }
        print("%s (%d bytes, ir_version %d, ops %s)"
              % (files[name], info[name]["bytes"], m.ir_version, info[name]["ops"]))
        for kind in ("inputs", "outputs"):
            for d in info[name][kind]:
                print("   %-7s %-10s %-6s %s" % (kind[:-1], d["name"], d["dtype"], d["shape"]))
    return info


def run_onnx_numpy(path, feeds):
    """Minimal float32 numpy interpreter for the ops our graphs use (cross-check only)."""
    import onnx
    from onnx import numpy_helper
    m = onnx.load(path)
    env = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    env.update(feeds)
    for node in m.graph.node:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        ins = [env[i] for i in node.input if i]
        if node.op_type == "Flatten":
            ax = attrs.get("axis", 1)
            out = ins[0].reshape(int(np.prod(ins[0].shape[:ax])), -1)
        elif node.op_type == "Gemm":
            a, b = ins[0], ins[1]
            if attrs.get("transA", 0):
                a = a.T
            if attrs.get("transB", 0):
                b = b.T
            out = np.float32(attrs.get("alpha", 1.0)) * (a @ b)
            if len(ins) > 2:
                out = out + np.float32(attrs.get("beta", 1.0)) * ins[2]
        elif node.op_type == "MatMul":
            out = ins[0] @ ins[1]
        elif node.op_type == "Add":
            out = ins[0] + ins[1]
        elif node.op_type == "Relu":
            out = np.maximum(ins[0], np.float32(0))
        elif node.op_type == "Softmax":
            ax = attrs.get("axis", -1)
            z = ins[0] - ins[0].max(axis=ax, keepdims=True)
            ez = np.exp(z)
            out = ez / ez.sum(axis=ax, keepdims=True)
        elif node.op_type == "Identity":
            out = ins[0]
        else:
            raise NotImplementedError(node.op_type)
        env[node.output[0]] = out.astype(np.float32)
    return {o.name: env[o.name] for o in m.graph.output}


# --------------------------------------------------------------------------- weights from ONNX


def tier_module(model, name):
    return getattr(model, name)


def onnx_linears(path):
    """The (weight [out,in], bias) of each Gemm in the graph at path, in graph order."""
    import onnx
    from onnx import numpy_helper
    m = onnx.load(path)
    inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    out = []
    for node in m.graph.node:
        if node.op_type != "Gemm":
            continue
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        w = inits[node.input[1]]
        if not attrs.get("transB", 0):
            w = w.T
        out.append((np.array(w, copy=True), np.array(inits[node.input[2]], copy=True)))
    return out


def freeze(model, tiers, src_dir):
    """Load each tier in tiers from src_dir/<tier>.onnx and stop training it.

    The tier's Linear layers (in definition order) take the graph's Gemm
    weights (in graph order); shapes must match the chain's widths.
    """
    for name in tiers:
        path = os.path.join(src_dir, name + ".onnx")
        linears = [m for m in tier_module(model, name).modules() if isinstance(m, nn.Linear)]
        gemms = onnx_linears(path)
        if len(gemms) != len(linears):
            sys.exit("%s: %d Gemm nodes, the %s tier has %d linear layers" % (path, len(gemms), name, len(linears)))
        with torch.no_grad():
            for lin, (w, b) in zip(linears, gemms):
                if tuple(w.shape) != tuple(lin.weight.shape):
                    sys.exit("%s: weight %s does not fit the %s tier's layer %s (check --edge-width, --fog-width)"
                             % (path, list(w.shape), name, list(lin.weight.shape)))
                lin.weight.copy_(torch.from_numpy(w))
                lin.bias.copy_(torch.from_numpy(b))
        for prm in tier_module(model, name).parameters():
            prm.requires_grad_(False)
        print("froze %s: weights from %s" % (name, path))


@torch.no_grad()
def tier_inputs(model, x):
    """Each tier's input for images x, chained through the model (eval mode)."""
    model.eval()
    _, h1 = model.edge(x)
    _, h2 = model.fog(h1)
    return {"edge": x.numpy(), "fog": h1.numpy(), "cloud": h2.numpy()}


def cross_check(model, paths, x):
    """Max abs difference between each ONNX file (tier -> path) and the torch tier."""
    inputs = tier_inputs(model, x)
    max_err = 0.0
    for name, path in paths.items():
        module = WithSoftmax(tier_module(model, name), name != "cloud").eval()
        with torch.no_grad():
            want = module(torch.from_numpy(inputs[name]))
        want = want if isinstance(want, tuple) else (want,)
        in_name = "image" if name == "edge" else "features"
        got = run_onnx_numpy(path, {in_name: inputs[name]})
        for g, w in zip(got.values(), want):
            max_err = max(max_err, float(np.abs(g - w.numpy()).max()))
    return max_err
