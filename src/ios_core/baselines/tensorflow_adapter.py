"""TensorFlow baselines: the IR written as a ``tf.function`` (channels-last), with and without XLA.

The graph is translated operator by operator (ONNX-to-TensorFlow converters are unmaintained) by the
channels-last walk: convolutions by ``tf.nn.conv2d`` / ``depthwise_conv2d`` with explicit (also
asymmetric) padding, grouped ones per group; pooling over windows the walk has padded (max over
``-inf``, averages divided by the reference's divisors); LayerNorm by ``tf.nn.moments``; slices,
concatenations and sums on the channel axis. Input and output stay NCHW (one
transpose each way), so outputs compare with the reference.

- ``tensorflow``: ``tf.function`` graph mode (the IOS paper's TensorFlow baseline);
- ``tensorflow_xla``: ``tf.function(jit_compile=True)`` (the paper's TensorFlow-XLA).

TensorFlow exposes no CUDA events: each sample is the wall time of ``number`` calls followed by
a device synchronization, recorded as ``wall-clock``. Option ``allow_cpu: true`` runs on the CPU
(for testing); by default a TensorFlow that sees no GPU is unavailable.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import numpy as np

from ios_core.baselines.channels_last import ArrayOps, check_translatable, run_graph
from ios_core.baselines.core import Framework, Run, module_available, versions
from ios_core.baselines.timing import time_wall_clock
from ios_core.ir import Conv
from ios_core.onnx_io import Network
from ios_core.timing import Timing
from ios_core.weights import Params


def available() -> tuple[bool, str]:
    ok, reason = module_available("tensorflow", "pip install tensorflow[and-cuda]")
    if not ok:
        return ok, reason
    import tensorflow as tf

    if not tf.config.list_physical_devices("GPU"):
        return False, f"tensorflow {tf.__version__} sees no GPU (a CPU build, or CUDA libraries not found)"
    return True, ""


def _conv(tf: Any, op: Conv, x: Any, p: Params) -> Any:
    top, left, bottom, right = op.pads
    cin = int(x.shape[-1])
    padding = [[0, 0], [top, bottom], [left, right], [0, 0]]
    w = np.asarray(p["weight"], dtype=np.float32).transpose(2, 3, 1, 0)  # OIHW -> HWIO
    if op.groups == 1:
        out = tf.nn.conv2d(x, w, (1, *op.stride, 1), padding, dilations=(1, *op.dilation, 1))
    elif op.groups == cin == op.out_channels:
        out = tf.nn.depthwise_conv2d(x, w.transpose(0, 1, 3, 2), (1, *op.stride, 1), padding, dilations=op.dilation)
    else:
        xs, ws = tf.split(x, op.groups, axis=-1), np.split(w, op.groups, axis=-1)
        out = tf.concat(
            [
                tf.nn.conv2d(xg, wg, (1, *op.stride, 1), padding, dilations=(1, *op.dilation, 1))
                for xg, wg in zip(xs, ws, strict=True)
            ],
            axis=-1,
        )
    return out + np.asarray(p["bias"], dtype=np.float32)


def _window(tf: Any, kind: str, x: Any, kernel: tuple[int, int], stride: tuple[int, int]) -> Any:
    if kind == "max":
        return tf.nn.max_pool2d(x, kernel, stride, "VALID")
    return tf.nn.avg_pool2d(x, kernel, stride, "VALID") * float(kernel[0] * kernel[1])  # the window's sum


def _shuffle(tf: Any, x: Any, groups: int) -> Any:
    _, h, w, c = x.shape
    grouped = tf.reshape(x, (-1, h, w, groups, c // groups))
    return tf.reshape(tf.transpose(grouped, (0, 1, 2, 4, 3)), (-1, h, w, c))


def _standardize(tf: Any, x: Any, eps: float) -> Any:
    mean, variance = tf.nn.moments(x, axes=[-1], keepdims=True)  # biased variance
    return (x - mean) * tf.math.rsqrt(variance + eps)


def array_ops(tf: Any) -> ArrayOps:
    """TensorFlow's primitives for the channels-last walk."""
    nn = tf.nn
    return ArrayOps(
        conv=partial(_conv, tf),
        window=partial(_window, tf),
        spatial=lambda kind, x: (tf.reduce_mean if kind == "mean" else tf.reduce_max)(x, axis=(1, 2), keepdims=True),
        pad=lambda x, pads, value: tf.pad(
            x, [[0, 0], [pads[0], pads[2]], [pads[1], pads[3]], [0, 0]], constant_values=value
        ),
        activations={
            "none": lambda x: x,
            "relu": nn.relu,
            "sigmoid": tf.sigmoid,
            "tanh": tf.tanh,
            "relu6": nn.relu6,
            "hardsigmoid": lambda x: tf.clip_by_value(x / 6.0 + 0.5, 0.0, 1.0),
            "hardswish": lambda x: x * tf.clip_by_value(x / 6.0 + 0.5, 0.0, 1.0),
            "silu": nn.silu,
            "gelu": partial(nn.gelu, approximate=False),
            "gelu_tanh": partial(nn.gelu, approximate=True),
        },
        clip=tf.clip_by_value,
        shuffle=partial(_shuffle, tf),
        standardize=partial(_standardize, tf),
        softmax=partial(nn.softmax, axis=-1),
        concat=lambda parts: tf.concat(parts, axis=-1),
        constant=lambda array, like: tf.constant(array, dtype=like.dtype),
    )


def tf_forward(tf: Any, network: Network) -> Callable[[Any], Any]:
    """The network as a Python function of an NCHW tensor, to be wrapped in ``tf.function``."""
    check_translatable(network.graph)
    ops = array_ops(tf)

    def forward(x: Any) -> Any:
        y = run_graph(network.graph, ops, tf.transpose(x, (0, 2, 3, 1)), network.weights)
        return tf.transpose(y, (0, 3, 1, 2))

    return forward


def runner(xla: bool) -> Callable[[Network, np.ndarray, Timing, str, Mapping[str, Any]], Run]:
    def run(network: Network, x: np.ndarray, timing: Timing, precision: str, options: Mapping[str, Any]) -> Run:
        import tensorflow as tf

        tf.config.experimental.enable_tensor_float_32_execution(precision == "fp32")
        gpus = tf.config.list_physical_devices("GPU")
        if not gpus and not options.get("allow_cpu", False):
            raise RuntimeError("tensorflow sees no GPU")
        started = time.perf_counter()
        with tf.device("/GPU:0" if gpus else "/CPU:0"):
            function = tf.function(tf_forward(tf, network), jit_compile=xla)
            batch = tf.constant(x.astype(np.float32))
            output = function(batch).numpy()  # traces and compiles

            def call() -> None:
                function(batch)
                tf.test.experimental.sync_devices() if gpus else None

            samples = time_wall_clock(call, timing)
        device = tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU") if gpus else "cpu"
        details = {"setup_s": round(time.perf_counter() - started, 3), "xla": xla}
        found = versions("tensorflow", "tensorflow-cpu")
        found["tensorflow_runtime"] = tf.__version__
        return Run(samples, device, found, "wall-clock", output, details)

    return run


FRAMEWORKS = (
    Framework("tensorflow", "TensorFlow tf.function (graph mode), channels-last", "cuda", available, runner(False)),
    Framework("tensorflow_xla", "TensorFlow tf.function with XLA (jit_compile=True)", "cuda", available, runner(True)),
)
