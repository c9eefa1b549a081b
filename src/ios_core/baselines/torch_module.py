"""The IR as a PyTorch module with the same weights: the cross-check and the baselines' network.

`torch_module` writes the graph out as a `torch.fx.GraphModule` -- straight-line code, one
statement per operator, so PyTorch eager pays no interpreter of ours and ``torch.compile`` sees
an ordinary module. Slices become ``x[:, a:b]``, concatenations ``torch.cat(..., 1)``, sums ``+``;
each convolution is an ``nn.Conv2d`` holding the node's weights (float64 in, ``dtype`` out) and
its activation a separate call, as PyTorch users write it. Average pooling excludes padding,
as the IR says. PyTorch is imported when the function is called.
"""

from __future__ import annotations

import operator
import re
from typing import Any

from ios_core.ir import Activation, Conv, Elementwise, Graph, Identity, Op, Pool, Sequential, Value
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
        functions = {"relu": self.torch.relu, "sigmoid": self.torch.sigmoid, "tanh": self.torch.tanh}
        return x if kind == "none" else self.call(functions[kind], x)

    def apply(self, op: Op, x: Any, module_name: str, params: Params, in_channels: int) -> Any:
        """One single-operand operator on fx value ``x``."""
        torch, functional = self.torch, self.torch.nn.functional
        if isinstance(op, Conv):
            conv = torch.nn.Conv2d(in_channels, op.out_channels, op.kernel, op.stride, op.padding, op.dilation,
                                   op.groups, bias=True)
            with torch.no_grad():
                conv.weight.copy_(torch.from_numpy(params["weight"]))
                conv.bias.copy_(torch.from_numpy(params["bias"]))
            self.root.add_module(module_name, conv.to(self.dtype))
            return self.activation(op.act, self.fx.call_module(module_name, (x,)))
        if isinstance(op, Pool):
            pools = {
                "max": lambda: self.call(functional.max_pool2d, x, op.kernel, op.stride, op.padding),
                "avg": lambda: self.call(functional.avg_pool2d, x, op.kernel, op.stride, op.padding,
                                         count_include_pad=False),
                "global_avg": lambda: self.call(functional.adaptive_avg_pool2d, x, 1),
                "global_max": lambda: self.call(functional.adaptive_max_pool2d, x, 1),
            }
            return pools[op.kind]()
        if isinstance(op, Activation):
            return self.activation(op.kind, x)
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
            out, channels = self.value(node.inputs[0]), node.inputs[0].channels
            for i, inner in enumerate(op.ops):
                prefix = f"{i}."
                inner_params = {k[len(prefix):]: v for k, v in params.items() if k.startswith(prefix)}
                out = self.apply(inner, out, _name(f"{name}_{i}"), inner_params, channels)
                channels = inner.out_channels if isinstance(inner, Conv) else channels
        else:
            out = self.apply(op, self.value(node.inputs[0]), _name(name), params, node.inputs[0].channels)
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
