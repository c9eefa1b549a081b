"""Reading an ONNX model into plain Python before conversion: nodes, constants, fusions, body and blocks.

The importer works on `OnnxNode`s -- op type, name, tensor names and decoded attributes -- so no
later step touches protobufs. Steps, each a small function over `Parsed`:

0. `read_file` loads an ``.onnx`` file; one that is missing, truncated or not ONNX is an error naming it;
1. `read` decodes the model: initializers and ``Constant`` nodes become numpy constants; ONNX's
   checker checks each node, and the nodes are put in a topological order (`topological_order`: an
   input nothing defines, a tensor made twice or a cycle is an error naming the nodes);
2. `ios_core.onnx_io.patterns` rewrites what ONNX spells in several nodes (activations, channel shuffle,
   padding before a convolution or pool, MatMul + Add) as one node;
3. `live` drops nodes whose results nothing reads (the rewritten patterns' first nodes, dead branches);
4. `fuse` folds a per-channel scale (a Mul by a constant) and a BatchNormalization into the convolution before
   it, then an activation into the convolution's (or matrix product's, or a BatchNormalization's left alone)
   ``ios.activation`` attribute, whenever the tensor in between has no other reader; a ReLU that only depthwise
   convolutions read moves into each of them (``ios.pre_activation``);
5. `cut_tensors` finds the block boundaries: tensors that are, once computed, the only live value, and in long
   spans without one, NASNet cells' exits (two-exit cuts).
"""

from __future__ import annotations

import heapq
import re
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import helper, numpy_helper

from ios_core.errors import UserError

ACTIVATION_OP = "ios::Activation"
"""The node `ios_core.onnx_io.patterns` makes of any ONNX spelling of an IR activation; attribute ``kind``."""
ACTIVATION_ATTR = "ios.activation"
PRE_ACTIVATION_ATTR = "ios.pre_activation"
"""A depthwise convolution's activation of its input, applied as it loads it (`fuse`)."""
PRE_ACTIVATIONS = frozenset({"relu"})
"""The activations `fuse` moves into their depthwise readers: the one the engine's fast depthwise kernels apply on
their loads (another would run once per reader, where it ran once)."""
CHANNEL_SHUFFLE_OP = "ios::ChannelShuffle"
DENSE_OP = "ios::Dense"
"""``x @ weight + bias`` with constant weight (K x M) and bias (M): a MatMul and the Add of its bias, fused."""
PRODUCTS = frozenset({"Conv", "Gemm", "MatMul", DENSE_OP})
"""Operators that become an IR convolution, so an activation after them folds into its ``act``."""


class OnnxImportError(UserError):
    """The model cannot be read or represented in the IR; the message names the file or node, and the reason."""


class UnsupportedOperatorError(OnnxImportError):
    """The model uses operators the importer has no rule for; ``operators`` lists each with its nodes."""

    def __init__(self, operators: dict[str, list[str]]) -> None:
        self.operators = operators
        listed = "; ".join(
            f"{op} ({len(nodes)}: {', '.join(nodes[:3])}{', ...' if len(nodes) > 3 else ''})"
            for op, nodes in sorted(operators.items())
        )
        super().__init__(f"unsupported ONNX operators: {listed}")


@dataclass(frozen=True)
class OnnxNode:
    """One ONNX node with its attributes decoded; an empty input name is an omitted optional input."""

    op_type: str
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.op_type} node {self.name!r}"


@dataclass
class Parsed:
    """A decoded model: one 4-D input, one output, nodes in topological order, and constants."""

    name: str
    input: str
    input_shape: tuple[int, int, int]
    batch: int | None  # the input's batch size where the file fixes it
    output: str
    nodes: list[OnnxNode]
    consts: dict[str, np.ndarray]
    opset: int

    def readers(self) -> Counter[str]:
        """How many times each tensor is read: by node inputs, and once more by the graph output."""
        counts = Counter(t for node in self.nodes for t in node.inputs if t)
        counts[self.output] += 1
        return counts


def read_file(path: str | Path) -> onnx.ModelProto:
    """The model in the ``.onnx`` file ``path``; a file that cannot be read or decoded is an error naming it."""
    try:
        model = onnx.load(str(path))
    except OSError as error:  # missing, a directory, unreadable; or so is its external data
        raise OnnxImportError(f"cannot read ONNX file {str(path)!r}: {error.strerror or error}") from error
    except DecodeError as error:
        raise OnnxImportError(f"ONNX file {str(path)!r} is truncated or not an ONNX model: {error}") from error
    if not model.ir_version:  # what an empty file, or other bytes that happen to decode, gives
        raise OnnxImportError(f"ONNX file {str(path)!r} is empty or not an ONNX model: it has no IR version")
    return model


def read(model: onnx.ModelProto, name: str | None = None) -> Parsed:
    """Decode ``model``, each node checked by ONNX's checker, the nodes in a topological order (`topological_order`).

    The checker runs node by node rather than on the whole model: the graph's own rules (inputs
    defined, no cycle) get messages naming the nodes from `topological_order`, and a graph output
    without a declared shape -- which ONNX Runtime runs, and the whole-model checker refuses -- passes.
    """
    graph = model.graph
    context = _checker_context(model)
    decoded = [_checked(proto, _node(proto, i), context) for i, proto in enumerate(graph.node)]
    order = topological_order(decoded, {v.name for v in graph.input} | {t.name for t in graph.initializer})
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    consts = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    nodes = []
    for node in (decoded[i] for i in order):
        if node.op_type == "Constant":
            consts[node.outputs[0]] = _constant_value(node)
        else:
            nodes.append(node)
    inputs = [v for v in graph.input if v.name not in consts]
    if len(inputs) != 1 or len(graph.output) != 1:
        raise OnnxImportError(
            f"a network needs exactly one input and one output, got inputs "
            f"{[v.name for v in inputs]} and outputs {[v.name for v in graph.output]}"
        )
    dims = _dims(inputs[0])
    if len(dims) != 4 or any(not isinstance(d, int) for d in dims[1:]):
        raise OnnxImportError(f"input {inputs[0].name!r} must be NCHW with static C, H, W; got dims {dims}")
    return Parsed(
        sanitize(name or graph.name or "onnx"),
        inputs[0].name,
        tuple(dims[1:]),
        dims[0],
        graph.output[0].name,
        nodes,
        consts,
        opset,
    )


def _checker_context(model: onnx.ModelProto) -> onnx.checker.C.CheckerContext:
    """What ONNX's node checker needs to know of the model: its IR version and opsets."""
    context = onnx.checker.C.CheckerContext()
    context.ir_version = model.ir_version
    context.opset_imports = {o.domain: o.version for o in model.opset_import}
    return context


def _checked(proto: onnx.NodeProto, node: OnnxNode, context: onnx.checker.C.CheckerContext) -> OnnxNode:
    """``node``, once ONNX's checker finds its decoded ``proto`` well formed (operator known, inputs counted,
    attributes typed); else an error naming it, on one line."""
    try:
        onnx.checker.check_node(proto, context)
    except onnx.checker.ValidationError as error:
        raise OnnxImportError(f"{node}: {' '.join(str(error).split())}") from error
    return node


def _node(proto: onnx.NodeProto, index: int) -> OnnxNode:
    """Node ``index`` of the file, decoded; an unnamed one is named after its op type and index."""
    attrs = {a.name: _attribute(a) for a in proto.attribute}
    op_type = proto.op_type if proto.domain in ("", "ai.onnx") else f"{proto.domain}::{proto.op_type}"
    return OnnxNode(op_type, proto.name or f"{proto.op_type}_{index}", tuple(proto.input), tuple(proto.output), attrs)


def topological_order(nodes: list[OnnxNode], defined: set[str]) -> list[int]:
    """The indices of ``nodes`` in a topological order: the file's own wherever it is one (ONNX asks for it, but
    ONNX Runtime sorts an unsorted file, so we do too).

    Raises
    ------
    OnnxImportError
        Naming the node with an input that no node, initializer or graph input (``defined``) makes,
        the two nodes that make one tensor, or the nodes of a cycle.
    """
    preds = _predecessors(nodes, defined)
    users: list[list[int]] = [[] for _ in nodes]
    for i, p in enumerate(preds):
        for j in p:
            users[j].append(i)
    waiting = [len(p) for p in preds]
    ready = [i for i, w in enumerate(waiting) if not w]  # a heap: the earliest ready node first keeps the file's order
    order: list[int] = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for j in users[i]:
            waiting[j] -= 1
            if not waiting[j]:
                heapq.heappush(ready, j)
    if len(order) < len(nodes):
        cycle = _cycle(preds, set(order))
        raise OnnxImportError("the graph has a cycle through " + " -> ".join(repr(nodes[i].name) for i in cycle))
    return order


def _predecessors(nodes: list[OnnxNode], defined: set[str]) -> list[set[int]]:
    """For each node, the indices of the nodes whose outputs it reads (see `topological_order` for the errors)."""
    producer: dict[str, int] = {}
    for i, node in enumerate(nodes):
        for t in filter(None, node.outputs):
            if t in producer or t in defined:
                other = str(nodes[producer[t]]) if t in producer else "an initializer or graph input"
                raise OnnxImportError(f"{node}: output {t!r} is made by {other} too")
            producer[t] = i
    preds = []
    for node in nodes:
        undefined = [t for t in node.inputs if t and t not in producer and t not in defined]
        if undefined:
            raise OnnxImportError(
                f"{node}: undefined input {undefined[0]!r} (no node, initializer or graph input makes it)"
            )
        preds.append({producer[t] for t in node.inputs if t in producer})
    return preds


def _cycle(preds: list[set[int]], placed: set[int]) -> list[int]:
    """One cycle among the nodes left unplaced, in data-flow order from its earliest node, which ends it again.

    Each unplaced node waits for an unplaced predecessor, so walking from one to such a predecessor
    again and again must come back to a node already walked through.
    """
    walked: dict[int, int] = {}
    i = min(set(range(len(preds))) - placed)
    while i not in walked:
        walked[i] = len(walked)
        i = min(preds[i] - placed)
    cycle = list(walked)[walked[i] :][::-1]
    first = cycle.index(min(cycle))
    cycle = cycle[first:] + cycle[:first]
    return [*cycle, cycle[0]]


def _attribute(attribute: onnx.AttributeProto) -> Any:
    value = helper.get_attribute_value(attribute)
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, onnx.TensorProto):
        return numpy_helper.to_array(value)
    return tuple(value) if isinstance(value, list) else value


def _constant_value(node: OnnxNode) -> np.ndarray:
    ((key, value),) = node.attrs.items()
    if key in ("sparse_value", "value_string", "value_strings"):
        raise OnnxImportError(f"{node}: Constant with {key} is not supported")
    return np.asarray(value)


def _dims(value: onnx.ValueInfoProto) -> tuple[int | None, ...]:
    tensor = value.type.tensor_type
    if not tensor.HasField("shape"):
        return ()
    return tuple(d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim)


def sanitize(name: str) -> str:
    """A node name safe everywhere it travels (PyTorch module keys, file names): ``[A-Za-z0-9_]``."""
    clean = re.sub(r"[^0-9A-Za-z_]+", "_", name).strip("_") or "node"
    return f"n{clean}" if clean[0].isdigit() else clean


def fuse(parsed: Parsed) -> None:
    """Fold a per-channel scale (`_scales_into_products`), then BatchNormalization, then an activation, into each
    convolution (an activation also into each matrix product, `PRODUCTS`, and into each BatchNormalization with no
    convolution to fold into, which becomes a channel affine: DenseNet's BN-ReLU after each concatenation) whose
    output only they read.

    Folding rewrites the Conv node in place of the chain: its weights become new constants
    ``<conv>::weight``/``::bias`` and its output the chain's last tensor, so numerics stay exact
    (up to rounding) and the folded nodes disappear.
    """
    _scales_into_products(parsed)
    readers = parsed.readers()
    reader_of = {t: node for node in parsed.nodes for t in node.inputs if t}
    dropped: set[int] = set()
    replaced: dict[int, OnnxNode] = {}
    for conv in parsed.nodes:
        if conv.op_type not in PRODUCTS or not _constant_inputs(parsed, conv.inputs[1:]):
            continue
        current = conv
        bn = reader_of.get(current.outputs[0]) if conv.op_type == "Conv" else None
        if bn is not None and bn.op_type == "BatchNormalization" and _foldable(parsed, readers, current, bn):
            current = _fold_batch_norm(parsed, current, bn)
            dropped.add(id(bn))
        replaced[id(conv)] = _fold_activation(readers, reader_of, current, dropped)
    for bn in parsed.nodes:
        if bn.op_type == "BatchNormalization" and id(bn) not in dropped:
            replaced[id(bn)] = _fold_activation(readers, reader_of, bn, dropped)
    parsed.nodes = [replaced.get(id(n), n) for n in parsed.nodes if id(n) not in dropped]
    _activations_into_depthwise_readers(parsed)


def _scales_into_products(parsed: Parsed) -> None:
    """Each Mul by a per-channel constant of a convolution's or matrix product's output that only it reads, directly
    or through Transposes only it reads (ConvNeXt's layer scale, after its MLP's second product and the transpose
    back to NCHW), scales that product's weights and bias instead: one pass over the tensor less."""
    readers = parsed.readers()
    producer = {t: node for node in parsed.nodes for t in node.outputs if t}
    replaced: dict[int, OnnxNode] = {}
    dropped: set[int] = set()
    for mul in parsed.nodes:
        consts = [t for t in mul.inputs if t in parsed.consts]
        if mul.op_type != "Mul" or len(mul.inputs) != 2 or len(consts) != 1:
            continue
        tensor, transposes = next(t for t in mul.inputs if t not in parsed.consts), []
        while (node := producer.get(tensor)) is not None and node.op_type == "Transpose" and readers[tensor] == 1:
            transposes.append(node)
            tensor = node.inputs[0]
        product = producer.get(tensor)
        if (product is None or readers[tensor] != 1 or product.op_type not in ("Conv", "MatMul", DENSE_OP)
                or id(product) in replaced or not _constant_inputs(parsed, product.inputs[1:])):
            continue
        scale = _channel_vector(parsed, product, transposes, parsed.consts[consts[0]])
        if scale is None:
            continue
        replaced[id(product)] = _scaled(parsed, product, scale)
        last = transposes[0] if transposes else product
        replaced[id(last)] = replace(replaced.get(id(last), last), outputs=mul.outputs)
        dropped.add(id(mul))
    parsed.nodes = [replaced.get(id(n), n) for n in parsed.nodes if id(n) not in dropped]


def _channel_vector(parsed: Parsed, product: OnnxNode, transposes: list[OnnxNode],
                    const: np.ndarray) -> np.ndarray | None:
    """``const`` as one factor per output channel of ``product``, seen through ``transposes`` (nearest first); None
    where it is not one (or the layout cannot be followed)."""
    weight = parsed.consts[product.inputs[1]]
    if weight.ndim != (4 if product.op_type == "Conv" else 2):
        return None
    if product.op_type == "Conv":
        rank, axis, channels = 4, 1, weight.shape[0]
    else:  # a dense product's channels are its output's last axis, of a rank only a transpose says
        rank = len(transposes[-1].attrs.get("perm", ())) if transposes else max(np.ndim(const), 1)
        axis, channels = rank - 1, weight.shape[1]
    for transpose in reversed(transposes):
        perm = list(transpose.attrs.get("perm", ()))
        if len(perm) != rank or axis not in perm:
            return None
        axis = perm.index(axis)
    c = np.asarray(const, dtype=np.float64)
    if c.ndim > rank:
        return None
    c = c.reshape((1,) * (rank - c.ndim) + c.shape)
    if any(n != 1 for i, n in enumerate(c.shape) if i != axis) or c.shape[axis] not in (1, channels):
        return None
    return np.broadcast_to(c.reshape(-1), (channels,))


def _scaled(parsed: Parsed, product: OnnxNode, scale: np.ndarray, shift: np.ndarray | float = 0.0) -> OnnxNode:
    """``product`` followed by ``x * scale + shift`` per output channel, as one product: its weights and bias
    scaled, the bias shifted, as new constants (a MatMul becomes a `DENSE_OP` with that bias)."""
    weight = np.asarray(parsed.consts[product.inputs[1]], dtype=np.float64)
    has_bias = len(product.inputs) > 2 and product.inputs[2]
    channels = weight.shape[0] if product.op_type == "Conv" else weight.shape[1]
    bias = np.asarray(parsed.consts[product.inputs[2]], dtype=np.float64) if has_bias else np.zeros(channels)
    names = (f"{product.name}::weight", f"{product.name}::bias")
    parsed.consts[names[0]] = weight * (scale[:, None, None, None] if product.op_type == "Conv" else scale)
    parsed.consts[names[1]] = bias.reshape(-1) * scale + shift
    op_type = DENSE_OP if product.op_type == "MatMul" else product.op_type
    return replace(product, op_type=op_type, inputs=(product.inputs[0], *names))


def _activations_into_depthwise_readers(parsed: Parsed) -> None:
    """Each `PRE_ACTIVATIONS` activation that only depthwise convolutions read (NASNet's ReLU before the separable
    convolutions of a cell's branches) moves into them: each reads the activation's input and applies it on load,
    and the pass that wrote the activated tensor, and the reads of it, go."""
    readers: dict[str, list[OnnxNode]] = {}
    for node in parsed.nodes:
        for t in node.inputs:
            readers.setdefault(t, []).append(node)
    moved: dict[int, OnnxNode] = {}
    dropped: set[int] = set()
    for act in parsed.nodes:
        if act.op_type != ACTIVATION_OP or act.attrs["kind"] not in PRE_ACTIVATIONS or act.outputs[0] == parsed.output:
            continue
        convs = readers.get(act.outputs[0], [])
        if not convs or not all(_is_depthwise(parsed, c) and c.inputs[0] == act.outputs[0] for c in convs):
            continue
        dropped.add(id(act))
        for conv in convs:
            moved[id(conv)] = replace(conv, inputs=(act.inputs[0], *conv.inputs[1:]),
                                      attrs={**conv.attrs, PRE_ACTIVATION_ATTR: act.attrs["kind"]})
    parsed.nodes = [moved.get(id(n), n) for n in parsed.nodes if id(n) not in dropped]


def _is_depthwise(parsed: Parsed, node: OnnxNode) -> bool:
    """A Conv of constant weights with one filter per input channel, of as many outputs (no pre-activation yet)."""
    if node.op_type != "Conv" or PRE_ACTIVATION_ATTR in node.attrs or not _constant_inputs(parsed, node.inputs[1:]):
        return False
    weight, group = parsed.consts[node.inputs[1]], int(node.attrs.get("group", 1))
    return weight.ndim == 4 and weight.shape[1] == 1 and weight.shape[0] == group > 1


def _fold_activation(readers: Counter[str], reader_of: dict[str, OnnxNode], node: OnnxNode,
                     dropped: set[int]) -> OnnxNode:
    """``node`` with the activation after it folded in (``ios.activation``, its output the activation's) where the
    activation alone reads it; the activation is added to ``dropped``."""
    act = reader_of.get(node.outputs[0])
    if act is None or act.op_type != ACTIVATION_OP or readers[node.outputs[0]] != 1:
        return node
    dropped.add(id(act))
    return replace(node, outputs=act.outputs, attrs={**node.attrs, ACTIVATION_ATTR: act.attrs["kind"]})


def _constant_inputs(parsed: Parsed, names: tuple[str, ...]) -> bool:
    return all(not t or t in parsed.consts for t in names)


def _foldable(parsed: Parsed, readers: Counter[str], conv: OnnxNode, bn: OnnxNode) -> bool:
    """Whether ``bn`` folds into ``conv``; only where the shapes fit, so a misfit is left to the importer's checks,
    which name the node, rather than broadcast away here."""
    single_output = len([t for t in bn.outputs if t]) == 1 and not bn.attrs.get("training_mode", 0)
    if not (readers[conv.outputs[0]] == 1 and single_output and _constant_inputs(parsed, bn.inputs[1:])):
        return False
    weight = parsed.consts[conv.inputs[1]]
    vectors = [t for t in (*conv.inputs[2:3], *bn.inputs[1:5]) if t]  # the conv's bias and the four statistics
    return weight.ndim == 4 and all(parsed.consts[t].shape == weight.shape[:1] for t in vectors)


def batch_norm_affine(parsed: Parsed, bn: OnnxNode) -> tuple[np.ndarray, np.ndarray]:
    """The per-channel ``(scale, shift)`` an inference-mode BatchNormalization applies, in float64."""
    gamma, beta, mean, var = (np.asarray(parsed.consts[t], dtype=np.float64) for t in bn.inputs[1:5])
    scale = gamma / np.sqrt(var + float(bn.attrs.get("epsilon", 1e-5)))
    return scale, beta - mean * scale


def _fold_batch_norm(parsed: Parsed, conv: OnnxNode, bn: OnnxNode) -> OnnxNode:
    return replace(_scaled(parsed, conv, *batch_norm_affine(parsed, bn)), outputs=bn.outputs[:1])


def live(nodes: list[OnnxNode], output: str) -> list[OnnxNode]:
    """The nodes that the output depends on, in their order; dead branches are dropped."""
    needed, live = {output}, []
    for node in reversed(nodes):
        if any(t in needed for t in node.outputs):
            live.append(node)
            needed.update(t for t in node.inputs if t)
    return live[::-1]


SPLIT_ABOVE = 32
"""A span between single-tensor cuts of more nodes than this is cut further at two-exit frontiers (`cut_tensors`):
Inception and ResNet modules (at most 12 nodes in the zoo) stay whole, each NASNet cell becomes a block."""


def cut_tensors(parsed: Parsed) -> list[str]:
    """Tensors at which the body splits into blocks, in order; ``parsed.nodes`` is reordered so that each block's
    nodes follow one another (still a topological order).

    A block ends at tensor T when the nodes that T depends on (its ancestors, ``A(T)``), less the earlier
    blocks', are the block, and every tensor of ``A(T)`` read outside it is T or the exit of an earlier block:

    - a *single-tensor* cut: T is, once computed, the only live tensor (read later, or the output). A tensor is
      live from its producer until its last reader; every node reaches the output (dead ones were dropped), so
      such a T separates what comes before it from what comes after in every topological order;
    - a *two-exit* cut, only inside a span of more than `SPLIT_ABOVE` nodes between single-tensor cuts: T
      descends from the previous exit, and besides T at most one earlier exit is still read after it -- a
      NASNet cell, which reads the exits of the two cells before it. In a small span such cuts would split an
      Inception module's branches or a residual block into chains, so they are not made there.

    Both are defined by the graph alone, not by the order in which the file lists its nodes.
    """
    nodes, consts = parsed.nodes, parsed.consts
    producer = {t: i for i, node in enumerate(nodes) for t in node.outputs if t}
    ancestors: list[int] = []  # per node, a bit mask of the nodes it depends on, itself included
    for i, node in enumerate(nodes):
        mask = 1 << i
        for t in node.inputs:
            if t in producer:
                mask |= ancestors[producer[t]]
        ancestors.append(mask)
    readers = dict.fromkeys([parsed.input, *producer], 0)  # per tensor, a bit mask of the nodes that read it
    for i, node in enumerate(nodes):
        for t in node.inputs:
            if t in readers:
                readers[t] |= 1 << i
    readers[parsed.output] |= 1 << len(nodes)  # the output is read after every node
    cuts: list[str] = []

    def two_exit_cut(i: int) -> str | None:
        previous = producer[cuts[-1]] if cuts else None
        if previous is not None and (i == previous or not ancestors[i] >> previous & 1):
            return None  # blocks nest: T descends from the last exit
        block = ancestors[i] & ~(ancestors[previous] if cuts else 0)
        return _two_exit_cut(nodes[i], ancestors[i], block, readers, producer, [parsed.input, *cuts])

    start = 0
    for single in [*_single_tensor_cuts(nodes, parsed.input, parsed.output, consts), None]:
        end = producer[single] if single else len(nodes)
        for i in range(start, end) if end - start > SPLIT_ABOVE else ():
            cut = two_exit_cut(i)
            # a cut read only by an activation moves past it, where that makes a cut too: a NASNet block ends at the
            # ReLU that the next two cells share, not at the concatenation before it
            while cut and readers[cut].bit_count() == 1 and (j := readers[cut].bit_length() - 1) < end:
                further = two_exit_cut(j) if nodes[j].op_type == ACTIVATION_OP else None
                if not further:
                    break
                cut = further
            if cut:
                cuts.append(cut)
        if single:
            cuts.append(single)
        start = end + 1
    block_of = [len(cuts)] * len(nodes)  # the first block whose exit depends on the node; after all, the last
    for k, t in reversed(list(enumerate(cuts))):
        for i in range(len(nodes)):
            if ancestors[producer[t]] >> i & 1:
                block_of[i] = k
    parsed.nodes = [nodes[i] for i in sorted(range(len(nodes)), key=lambda i: block_of[i])]
    return cuts


def _two_exit_cut(
    node: OnnxNode, ancestors: int, block: int, readers: dict[str, int], producer: dict[str, int], exits: list[str]
) -> str | None:
    """The output T of ``node`` where a two-exit cut there ends ``block`` (`cut_tensors`), else None.

    Of the tensors made in ``ancestors`` (or the input) and read outside them, one is T and at most one other, an
    earlier exit that is the last one or is read in ``block`` too: a cell joins the two exits before it. (An older
    exit that the block does not read merely outlives it: the block is a branch of the cell that joins them.)
    """
    frontier = []
    for t, reads in readers.items():
        if (t not in producer or ancestors >> producer[t] & 1) and reads & ~ancestors:
            frontier.append(t)
            if len(frontier) > 2:
                return None
    own = [t for t in frontier if t in node.outputs]
    older = [t for t in frontier if t not in own]
    if len(own) != 1 or any(t not in exits or (t != exits[-1] and not readers[t] & block) for t in older):
        return None
    return own[0]


def _single_tensor_cuts(nodes: list[OnnxNode], source: str, sink: str, consts: dict[str, np.ndarray]) -> list[str]:
    """The tensors that are, once computed, the only live tensor (see `cut_tensors`), in order."""
    last_read = {t: i for i, node in enumerate(nodes) for t in node.inputs if t and t not in consts}
    last_read[sink] = len(nodes)
    live, cuts = {source}, []
    for i, node in enumerate(nodes):
        live.update(t for t in node.outputs if t in last_read)
        live.difference_update(t for t in node.inputs if last_read.get(t) == i)
        if len(live) == 1 and next(iter(live)) in node.outputs:
            cuts.append(next(iter(live)))
    return cuts
