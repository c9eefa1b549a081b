"""Seeded random multi-branch CNNs written with `onnx.helper`, and ONNX Runtime (CPU) to run them.

Stages of equal height and width: inside one, each step applies a random operator -- a Conv
(various kernels, dilation, groups, with BatchNormalization and an activation or not), a pool,
a lone BatchNormalization or activation, a channel Split or Slice, a Concat, an Add or Mul of two
tensors, an Add/Mul/Sub/Div by a per-channel constant, an Identity or Dropout -- to tensors drawn
from those made so far. A stage ends by concatenating every tensor nothing has read; a
stride-2 convolution or pool leads to the next stage. The head, when asked for, is global average
pool, Flatten and Gemm, then Softmax.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper


class _Net:
    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.count = 0

    def name(self, kind: str) -> str:
        self.count += 1
        return f"{kind}_{self.count}"

    def const(self, array: np.ndarray, dtype=np.float32) -> str:
        name = self.name("c")
        self.inits.append(numpy_helper.from_array(np.asarray(array, dtype=dtype), name))
        return name

    def node(self, op: str, inputs: list[str], outputs: int = 1, **attrs) -> list[str]:
        name = self.name(op.lower())
        outs = [f"{name}_out{i}" if outputs > 1 else name for i in range(outputs)]
        self.nodes.append(helper.make_node(op, inputs, outs, name=name, **attrs))
        return outs

    def conv(self, x: str, cin: int, cout: int, kernel=(3, 3), stride=1, dilation=1, groups=1, bias=True) -> str:
        w = self.rng.normal(0, np.sqrt(2 / (cin // groups * kernel[0] * kernel[1])), (cout, cin // groups, *kernel))
        pads = [dilation * (k - 1) // 2 for k in kernel] * 2
        inputs = [x, self.const(w)] + ([self.const(self.rng.normal(0, 0.1, cout))] if bias else [])
        return self.node("Conv", inputs, kernel_shape=list(kernel), strides=[stride] * 2, pads=pads,
                         dilations=[dilation] * 2, group=groups)[0]

    def batch_norm(self, x: str, c: int) -> str:
        stats = [self.rng.uniform(0.5, 1.5, c), self.rng.normal(0, 0.1, c), self.rng.normal(0, 0.1, c),
                 self.rng.uniform(0.5, 1.5, c)]
        return self.node("BatchNormalization", [x, *map(self.const, stats)], epsilon=1e-3)[0]


def _step(net: _Net, tensors: list[tuple[str, int]], read: set[str]) -> list[tuple[str, int]]:
    """One random operator on tensors drawn from ``tensors``; returns the tensors it made."""
    rng = net.rng

    def pick() -> tuple[str, int]:
        t = tensors[rng.integers(len(tensors))]
        read.add(t[0])
        return t

    x, c = pick()
    kind = rng.choice(["conv", "conv", "conv", "pool", "bn", "act", "split", "slice", "concat", "add", "mul",
                       "affine", "identity"])
    if kind == "conv":
        kernel = [(1, 1), (3, 3), (5, 5), (1, 3), (3, 1)][rng.integers(5)]
        groups = int(rng.choice([g for g in (1, 2, c) if c % g == 0]))
        cout = int(rng.integers(1, 4)) * max(groups, 2) if groups != c else c
        y = net.conv(x, c, cout, kernel, dilation=int(rng.choice([1, 1, 2])), groups=groups,
                     bias=bool(rng.integers(2)))
        if rng.random() < 0.5:
            y = net.batch_norm(y, cout)
        if rng.random() < 0.7:
            y = net.node(str(rng.choice(["Relu", "Relu", "Sigmoid", "Tanh"])), [y])[0]
        return [(y, cout)]
    if kind == "pool":
        op = str(rng.choice(["MaxPool", "AveragePool"]))
        extra = {"count_include_pad": int(rng.integers(2))} if op == "AveragePool" else {}
        return [(net.node(op, [x], kernel_shape=[3, 3], pads=[1] * 4, strides=[1, 1], ceil_mode=int(rng.integers(2)),
                          **extra)[0], c)]
    if kind == "bn":
        return [(net.batch_norm(x, c), c)]
    if kind == "act":
        return [(net.node(str(rng.choice(["Relu", "Sigmoid", "Tanh"])), [x])[0], c)]
    if kind == "split" and c >= 2:
        first = int(rng.integers(1, c))
        outs = net.node("Split", [x, net.const([first, c - first], np.int64)], outputs=2, axis=1)
        return [(outs[0], first), (outs[1], c - first)]
    if kind == "slice" and c >= 2:
        lo = int(rng.integers(0, c - 1))
        hi = int(rng.integers(lo + 1, c + 1))
        bounds = [net.const([v], np.int64) for v in (lo, hi, 1)]
        return [(net.node("Slice", [x, *bounds])[0], hi - lo)]
    if kind == "concat":
        y, d = pick()
        return [(net.node("Concat", [x, y], axis=1)[0], c + d)]
    if kind in ("add", "mul"):
        same = [t for t in tensors if t[1] == c]
        y = same[rng.integers(len(same))]
        read.add(y[0])
        return [(net.node(kind.capitalize(), [x, y[0]])[0], c)]
    if kind == "affine":
        op = str(rng.choice(["Add", "Mul", "Sub", "Div"]))
        shape = [(c, 1, 1), (1, c, 1, 1), (1,)][rng.integers(3)]
        value = net.const(rng.uniform(0.5, 1.5, shape))
        return [(net.node(op, [x, value])[0], c)]
    if kind == "identity":
        return [(net.node(str(rng.choice(["Identity", "Dropout"])), [x])[0], c)]
    return []


def random_onnx(seed: int, stages: int = 2, steps: int = 8, size: int = 10, head: bool = False,
                opset: int = 17) -> onnx.ModelProto:
    """A random multi-branch CNN, checked by `onnx.checker`; input ``x`` of shape (N, 3, size, size)."""
    net = _Net(seed)
    current, channels = "x", 3
    for stage in range(stages):
        tensors, read = [(current, channels)], set()
        for _ in range(steps):
            tensors += _step(net, tensors, read)
        unread = [t for t in tensors[1:] if t[0] not in read] or [tensors[-1]]
        if len(unread) > 1:
            current, channels = net.node("Concat", [t for t, _ in unread], axis=1)[0], sum(c for _, c in unread)
        else:
            current, channels = unread[0]
        if stage < stages - 1:
            if net.rng.random() < 0.5:
                current = net.node("MaxPool", [current], kernel_shape=[3, 3], strides=[2, 2], pads=[1] * 4)[0]
            else:
                current, channels = net.conv(current, channels, 8, (3, 3), stride=2), 8
                current = net.node("Relu", [net.batch_norm(current, 8)])[0]
    output = current
    if head:
        flat = net.node("Flatten", [net.node("GlobalAveragePool", [current])[0]], axis=1)[0]
        w, b = net.const(net.rng.normal(0, 0.3, (5, channels))), net.const(net.rng.normal(0, 0.1, 5))
        output = net.node("Softmax", [net.node("Gemm", [flat, w, b], transB=1)[0]], axis=1)[0]
    graph = helper.make_graph(net.nodes, f"random{seed}",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, size, size])],
                              [helper.make_tensor_value_info(output, TensorProto.FLOAT, None)], net.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = min(model.ir_version, 10)
    model = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)  # fills the output's shape
    onnx.checker.check_model(model, full_check=True)
    return model


def run_ort(model: onnx.ModelProto, x: np.ndarray, outputs: list[str] | None = None) -> list[np.ndarray]:
    """ONNX Runtime on CPU, float32 input; ``outputs`` adds intermediate tensors as graph outputs."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    existing = {o.name for o in model.graph.output}
    model.graph.output.extend(helper.make_empty_tensor_value_info(t) for t in outputs or [] if t not in existing)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = outputs or [o.name for o in model.graph.output]
    return session.run(names, {session.get_inputs()[0].name: x.astype(np.float32)})


