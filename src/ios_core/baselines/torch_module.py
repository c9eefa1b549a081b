"""The IR as a PyTorch module with the same weights: the cross-check and the baselines' network.

`torch_module` writes the graph out as a `torch.fx.GraphModule` -- straight-line code, one
statement per operator, so PyTorch eager pays no interpreter of ours and ``torch.compile`` sees
an ordinary module. Slices become ``x[:, a:b]``, concatenations ``torch.cat(..., 1)``, sums ``+``;
each convolution is an ``nn.Conv2d`` holding the node's weights (float64 in, ``dtype`` out) and
its activation a separate call, as PyTorch users write it; LayerNorm over channels an ``nn.LayerNorm``
between two permutes. Pooling is PyTorch's (the IR's ``ceil_mode`` and ``count_include_pad`` are its);
asymmetric pads become an ``F.pad`` first (-inf for max pooling, an average divided by a constant
buffer of the reference's divisors). PyTorch is imported when the function is called.
"""

from __future__ import annotations

import math
import operator
import re
from typing import Any

from ios_core.ir import (
    Activation,
    ChannelShuffle,
    Clip,
    Conv,
    Elementwise,
    Graph,
    Identity,
    LayerNorm,
    Op,
    Pad,
    Pads,
    Pool,
    Sequential,
    Shape,
    Softmax,
    Value,
    rules_of,
)
from ios_core.reference import pool_divisors, reach_pads
from ios_core.weights import Params


def _name(text: str) -> str:
    return re.sub(r"\W", "_", text)


class _Writer:
    """Appends fx nodes for IR nodes, keeping each IR node's fx value."""

    def __init__(self, graph: Graph, weights: dict[str, Params], dtype: Any) -> None:
        import torch
        from torch import fx

        self.torch, self.ir, self.weights, self.dtype = torch, graph, weights, dtype
        self.root = torch.nn.Module()
        self.fx = fx.Graph()
        self.env = {graph.input.name: self.fx.placeholder("x")}

    def call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        return self.fx.call_function(fn, args, kwargs)

    def value(self, value: Value) -> Any:
        terms = []
        for term in value.terms:
            parts = []
            for s in term:
                source = self.env[s.node]
                whole = s.begin == 0 and s.end == self.ir.shapes[s.node].channels
                window = (slice(None), slice(s.begin, s.end))
                parts.append(source if whole else self.call(operator.getitem, source, window))
            terms.append(parts[0] if len(parts) == 1 else self.call(self.torch.cat, parts, dim=1))
        out = terms[0]
        for term in terms[1:]:
            out = self.call(operator.add, out, term)
        return out

    def activation(self, kind: str, x: Any) -> Any:
        functional = self.torch.nn.functional
        functions = {
            "relu": (self.torch.relu, {}),
            "sigmoid": (self.torch.sigmoid, {}),
            "tanh": (self.torch.tanh, {}),
            "relu6": (functional.relu6, {}),
            "hardsigmoid": (functional.hardsigmoid, {}),
            "hardswish": (functional.hardswish, {}),
            "silu": (functional.silu, {}),
            "gelu": (functional.gelu, {}),
            "gelu_tanh": (functional.gelu, {"approximate": "tanh"}),
        }
        if kind == "none":
            return x
        function, options = functions[kind]
        return self.call(function, x, **options)

    def module(self, name: str, module: Any, params: Params) -> str:
        """Register ``module`` under ``name`` in the writer's dtype, holding ``params`` (float64 arrays)."""
        module = module.to(self.dtype)  # before the copy: a float64 module keeps float64 weights
        with self.torch.no_grad():
            for key, array in params.items():
                getattr(module, key).copy_(self.torch.from_numpy(array))
        self.root.add_module(name, module)
        return name

    def pad(self, x: Any, pads: Pads, value: float = 0.0) -> Any:
        """``F.pad`` by (top, left, bottom, right); a negative amount crops."""
        top, left, bottom, right = pads
        return self.call(self.torch.nn.functional.pad, x, (left, right, top, bottom), value=value)

    def pool(self, op: Pool, x: Any, shape: Shape, name: str) -> Any:
        functional = self.torch.nn.functional
        if op.kind.startswith("global"):
            reduce = functional.adaptive_avg_pool2d if op.kind == "global_avg" else functional.adaptive_max_pool2d
            return self.call(reduce, x, 1)
        top, left, bottom, right = op.pads
        if (top, left) == (bottom, right) and 2 * max(top, left) <= min(op.kernel):  # PyTorch's own padding
            if op.kind == "max":
                return self.call(functional.max_pool2d, x, op.kernel, op.stride, op.padding, ceil_mode=op.ceil_mode)
            return self.call(
                functional.avg_pool2d,
                x,
                op.kernel,
                op.stride,
                op.padding,
                ceil_mode=op.ceil_mode,
                count_include_pad=op.count_include_pad,
            )
        # Padded by hand to exactly the cells the IR's windows reach, then pooled without padding or ceil_mode.
        padded = self.pad(x, reach_pads(op, shape.height, shape.width), -math.inf if op.kind == "max" else 0.0)
        if op.kind == "max":
            return self.call(functional.max_pool2d, padded, op.kernel, op.stride)
        sums = self.call(functional.avg_pool2d, padded, op.kernel, op.stride, divisor_override=1)
        divisors = self.torch.from_numpy(pool_divisors(op, shape.height, shape.width)).to(self.dtype)
        self.root.register_buffer(f"{name}_divisors", divisors)
        return self.call(operator.truediv, sums, self.fx.get_attr(f"{name}_divisors"))

    def apply(self, op: Op, x: Any, module_name: str, params: Params, shape: Shape) -> Any:
        """One single-operand operator on fx value ``x`` of per-sample ``shape``."""
        torch, functional = self.torch, self.torch.nn.functional
        if isinstance(op, Conv):
            top, left, bottom, right = op.pads
            symmetric = (top, left) == (bottom, right)
            conv = torch.nn.Conv2d(
                shape.channels,
                op.out_channels,
                op.kernel,
                op.stride,
                op.padding if symmetric else 0,
                op.dilation,
                op.groups,
                bias=True,
            )
            out = self.fx.call_module(
                self.module(module_name, conv, params), (x if symmetric else self.pad(x, op.pads),)
            )
            return self.activation(op.act, out)
        if isinstance(op, Pool):
            return self.pool(op, x, shape, module_name)
        if isinstance(op, Activation):
            return self.activation(op.kind, x)
        if isinstance(op, Pad):
            return self.pad(x, op.pads, op.value)
        if isinstance(op, Clip):
            return self.call(torch.clamp, x, op.low, op.high)
        if isinstance(op, ChannelShuffle):
            return self.call(functional.channel_shuffle, x, op.groups)
        if isinstance(op, LayerNorm):  # over channels: NHWC for nn.LayerNorm, a view of a channels-last batch
            norm = torch.nn.LayerNorm(shape.channels, op.eps)
            last = self.fx.call_method("permute", (x, 0, 2, 3, 1))
            out = self.fx.call_module(self.module(module_name, norm, params), (last,))
            return self.fx.call_method("permute", (out, 0, 3, 1, 2))
        if isinstance(op, Softmax):
            return self.call(torch.softmax, x, 1)
        if isinstance(op, Identity):
            return x
        raise TypeError(f"{type(op).__name__} does not take one operand")

    def node(self, name: str) -> None:
        node = self.ir[name]
        op, params = node.op, self.weights.get(name, {})
        if isinstance(op, Elementwise):
            combine = operator.add if op.kind == "add" else operator.mul
            out = self.value(node.inputs[0])
            for value in node.inputs[1:]:
                out = self.call(combine, out, self.value(value))
        elif isinstance(op, Sequential):
            out, shape = self.value(node.inputs[0]), self.ir.operand_shapes(node)[0]
            for i, inner in enumerate(op.ops):
                prefix = f"{i}."
                inner_params = {k[len(prefix) :]: v for k, v in params.items() if k.startswith(prefix)}
                out = self.apply(inner, out, _name(f"{name}_{i}"), inner_params, shape)
                shape = rules_of(inner).shape(inner, (shape,))
        else:
            out = self.apply(op, self.value(node.inputs[0]), _name(name), params, self.ir.operand_shapes(node)[0])
        self.env[name] = out


def torch_module(graph: Graph, weights: dict[str, Params], dtype: Any = None) -> Any:
    """A `torch.fx.GraphModule` computing ``graph`` with ``weights`` (on the CPU, in ``dtype``, float32 by default).

    Move it with ``.to(device)``, ``.to(memory_format=torch.channels_last)`` as usual; call it on
    an NCHW batch.
    """
    import torch
    from torch import fx

    writer = _Writer(graph, weights, dtype or torch.float32)
    for node in graph.operators:
        writer.node(node.name)
    writer.fx.output(writer.env[graph.output])
    module = fx.GraphModule(writer.root, writer.fx, class_name=_name(graph.name))
    return module.eval()
