"""The model zoo of issue #16: 16 torchvision and timm CNNs, built and exported to ONNX the one way every script does.

`ZOO` names each network's library, constructor arguments and resolutions; `build_module` makes it (random
initialization, randomized BatchNorm statistics, eval mode) and `export` writes it with either PyTorch exporter.
``tests/zoo/make_zoo.py`` (the committed small files), ``bench/zoo.py`` and ``bench/half_precision.py`` use them.
PyTorch, torchvision and timm are imported only inside the functions: the table itself needs none (CI has no torch).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Source:
    """Where a network comes from: ``torchvision.models.<name>(**kwargs)`` or ``timm.create_model(name, **kwargs)``;
    its full ``resolution`` (the benchmark's) and the ``small`` one the committed test files are exported at, the
    smallest its layers accept; ``max_part_size``, the parts its search runs over (`OptimizerOptions`)."""

    library: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    resolution: int = 224
    small: int = 64
    max_part_size: int = 40


_NO_AUX = {"aux_logits": False, "init_weights": True}  # the classifier only, initialized as torchvision trains it

ZOO = {
    "googlenet": Source("torchvision", _NO_AUX),
    "inception_v3": Source("torchvision", _NO_AUX, 299, small=75),
    "resnet50": Source("torchvision"),
    "densenet121": Source("torchvision"),
    "squeezenet1_1": Source("torchvision"),
    "efficientnet_b0": Source("torchvision"),
    "mobilenet_v2": Source("torchvision"),
    "mobilenet_v3_small": Source("torchvision"),
    "shufflenet_v2_x1_0": Source("torchvision"),
    "regnet_y_400mf": Source("torchvision"),
    "mnasnet1_0": Source("torchvision"),
    "convnext_tiny": Source("torchvision"),
    "dpn68": Source("timm"),
    "inception_v4": Source("timm", resolution=299, small=75),
    # Their cells are blocks of about 40 wide operators. Over parts of 40 one cell alone has 247 thousand distinct
    # stages; over parts of 24 the network ~390 thousand (165 s simulated, ~13 min measured); over parts of 16
    # it has ~40 thousand and the simulated search takes 2-4 s (docs/performance.md, "Search cost").
    "nasnetalarge": Source("timm", resolution=331, max_part_size=16),
    "pnasnet5large": Source("timm", resolution=331, max_part_size=16),
}
EXPORTERS = ("torchscript", "dynamo")
"""PyTorch's two ONNX exporters: TorchScript at opset 17, dynamo (the default of current PyTorch) at opset 18."""


def build_module(name: str, seed: int = 0) -> Any:
    """The network ``name`` of `ZOO`, seeded, with randomized BatchNorm statistics (no pretrained weights), in eval
    mode."""
    import torch

    torch.manual_seed(seed)
    source = ZOO[name]
    if source.library == "torchvision":
        import torchvision

        model = getattr(torchvision.models, name)(weights=None, **source.kwargs)
    else:
        import timm

        model = timm.create_model(name, pretrained=False, **source.kwargs)
    randomize_batch_norm(model)
    return model.eval()


def randomize_batch_norm(model: Any) -> None:
    """Give every BatchNorm of ``model`` random running statistics (mean ~ N(0, 0.1), variance ~ U(0.5, 1.5)): a
    freshly initialized one is the identity, which would hide a misread or a mis-folded normalization."""
    import torch

    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.running_mean.normal_(0.0, 0.1)
                module.running_var.uniform_(0.5, 1.5)


def calibrate_batch_norm(model: Any, batch: Any) -> None:
    """Running statistics measured on ``batch``, as training leaves them (one pass in train mode, their cumulative
    average), then eval mode: each BatchNorm normalizes what reaches it. Random statistics do not, and torchvision's
    Inception V3, initialized with weights of std 0.1, reaches 1e13 on them, far past float16's range (its fp16 rows
    were NaN on the H100); measured, 25."""
    import torch

    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average: one pass sets the statistics of that pass
    model.train()
    with torch.no_grad():
        model(batch)
    model.eval()


def export(module: Any, x: Any, exporter: str, path: str | Path) -> Path:
    """``module`` written to ``path`` for the input batch ``x`` (a tensor or an array) by an exporter of
    `EXPORTERS`."""
    import torch

    batch = x if isinstance(x, torch.Tensor) else torch.from_numpy(x)
    if exporter == "torchscript":
        torch.onnx.export(module, batch, str(path), opset_version=17, dynamo=False)
    else:
        torch.onnx.export(module, (batch,), str(path), opset_version=18, dynamo=True)
    return Path(path)
