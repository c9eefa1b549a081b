"""The XLA baseline on JAX's CPU backend: `jax_module` against the float64 reference, and the adapter.

JAX (CPU) is not a project dependency: these tests run where ``pip install jax`` was done. hidet's
check is tested here too: it is never installed in CI, and says so.
"""

import importlib.util
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from random_graphs import every_op_graph, random_graphs

from ios_core import models
from ios_core.baselines import channels_last, get, hidet_adapter, jax_module, measure
from ios_core.baselines.channels_last import UntranslatableOpError
from ios_core.baselines.core import versions
from ios_core.baselines.jax_adapter import CUDA_PLUGINS
from ios_core.baselines.jax_module import jax_forward, jax_params
from ios_core.ir import Activation, Conv, GraphBuilder, Pool, concat
from ios_core.onnx_io import Network
from ios_core.precision import TOLERANCE
from ios_core.reference import relative_error, run_graph
from ios_core.timing import Timing
from ios_core.weights import make_input


def error_against_reference(network: Network, batch: int) -> float:
    """The relative error of the jitted JAX function (HIGHEST precision, NHWC) against the float64 reference."""
    jax = pytest.importorskip("jax")
    x = make_input(network.graph, batch, 0)
    forward = jax.jit(jax_forward(network.graph, jax.lax.Precision.HIGHEST))
    out = np.asarray(forward(jax_params(network.weights), x.transpose(0, 2, 3, 1).astype(np.float32)))
    return relative_error(out.transpose(0, 3, 1, 2), run_graph(network.graph, x, network.weights))


@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("model", ["demo", "squeezenet", "inception_v3"])
def test_the_jax_function_equals_the_reference(model, batch):
    assert error_against_reference(Network.of(models.get(model)), batch) < 1e-5


def every_operator() -> Network:
    """Each operator kind and form the models do not all show: dilation, groups, padded pools at odd sizes."""
    b = GraphBuilder("every", 6, 9, 9)
    x = b.input
    grouped = b.node(Conv(6, (3, 3), (2, 2), (2, 2), (2, 2), 3, "sigmoid"), x)
    depthwise = b.conv(x, 6, 3, stride=2, padding=1, groups=6, act="tanh")
    avg = b.pool(b.mul(grouped, depthwise), "avg", 3, stride=2, padding=1)
    maximum = b.pool(concat([grouped[:3], depthwise[3:]]), "max", 3, stride=2, padding=1)
    chain = b.sequential(x, Conv(4, (1, 1), act="relu"), Pool("max", (2, 2), (2, 2)), Activation("sigmoid"))
    block = b.end_block(b.add(avg + maximum, b.activation(b.conv(chain, 6, 2, act="none"), "relu")))
    b.end_block(concat([b.pool(block, "global_avg"), b.pool(block, "global_max")]))
    return Network.of(b.build())


def test_every_operator_form_equals_the_reference():
    assert error_against_reference(every_operator(), 2) < 1e-5


def test_every_zoo_operator_equals_the_reference():
    assert error_against_reference(Network.of(every_op_graph(), seed=1), 2) < 1e-5


@settings(max_examples=15, deadline=None)
@given(random_graphs(max_ops=10, blocks=2, zoo=True))
def test_random_graphs_of_zoo_operators_equal_the_reference(graph):
    # float32 against float64, as the engine's fp32-strict: a random graph compounds rounding the models do not (a
    # LayerNorm over four channels of near-equal values gave 1.8e-5, found on a clean clone)
    assert error_against_reference(Network.of(graph, seed=5), 2) < TOLERANCE["fp32-strict"]


def test_an_operator_without_translation_is_named(monkeypatch):
    builder = GraphBuilder("odd", 3, 8, 8)
    builder.end_block(builder.activation(builder.conv(builder.input, 4, 3, padding=1), "tanh", name="squash"))
    # as if Activation were an operator kind added to the IR but not to the walk
    monkeypatch.setattr(channels_last, "TRANSLATED", tuple(t for t in channels_last.TRANSLATED if t is not Activation))
    with pytest.raises(UntranslatableOpError, match="node 'squash': no channels-last translation of Activation"):
        jax_module.jax_forward(builder.build())


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed here")
@pytest.mark.skipif(bool(set(versions(*CUDA_PLUGINS)) & set(CUDA_PLUGINS)), reason="jax has a CUDA plugin here")
def test_a_cpu_only_jax_is_unavailable_with_the_reason():
    ok, reason = get("xla").available()
    assert not ok and reason == (f"jax {versions('jax')['jax']} has no CUDA backend here (cpu only): "
                                 "no jax-cuda13-plugin or jax-cuda12-plugin; pip install 'jax[cuda13]'")


@pytest.mark.parametrize(("precision", "conv_precision"), [("fp32", "DEFAULT"), ("fp32-strict", "HIGHEST")])
def test_the_adapter_measures_the_demo_on_the_cpu_backend(precision, conv_precision):
    pytest.importorskip("jax")
    framework = replace(get("xla"), available=lambda: (True, ""))  # the CPU backend, as allow_cpu asks
    m = measure(framework, Network.of(models.get("demo")), 2, Timing(warmup=1, number=2, repeat=3),
                precision=precision, options={"allow_cpu": True})
    assert m.status == "measured", m.reason
    assert m.clock == "wall-clock" and len(m.latencies_ms) == 3 and m.rel_error < 1e-5  # no TF32 on a CPU
    assert m.details["conv_precision"] == conv_precision and m.device == "cpu" and "jax" in m.versions


@pytest.mark.skipif(importlib.util.find_spec("hidet") is not None, reason="hidet is installed here")
def test_hidet_says_why_it_is_absent():
    ok, reason = get("hidet").available()
    assert not ok and reason == ("hidet not installed (pip install hidet: needs torch>=2.3, cuda-python and "
                                 "hip-python-fork)")


def test_hidet_finds_nvcc_where_hidet_looks(monkeypatch, tmp_path):
    monkeypatch.setattr(hidet_adapter.shutil, "which", lambda name: None)
    monkeypatch.setattr(hidet_adapter, "NVCC_DIRS", (str(tmp_path),))
    assert hidet_adapter.nvcc() is None
    (tmp_path / "nvcc").touch()
    assert hidet_adapter.nvcc() == str(tmp_path / "nvcc")


def test_hidet_runs_with_its_hip_check_off_then_restores_it(monkeypatch):
    """hidet 0.6.1 fails every compiled graph where it finds libamdhip64 (see hidet_adapter): a CUDA run turns its
    HIP check off only while hidet runs."""
    import sys
    import types

    hip = types.ModuleType("hidet.hip")
    hip.available = lambda: True
    monkeypatch.setitem(sys.modules, "hidet", types.ModuleType("hidet"))
    monkeypatch.setitem(sys.modules, "hidet.hip", hip)
    sys.modules["hidet"].hip = hip
    seen = {}

    def compiled(*args):
        seen.update(hip=hip.available(), args=args)
        return "timed"

    monkeypatch.setattr(hidet_adapter, "COMPILED_WITH_HIDET", compiled)
    assert hidet_adapter.run_hidet("net", "x", "timing", "fp32", {}) == "timed"
    assert seen == {"hip": False, "args": ("net", "x", "timing", "fp32", {})} and hip.available() is True


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_the_adapter_runs_the_sixteen_bit_precisions_within_their_tolerance(precision):
    pytest.importorskip("jax")

    framework = replace(get("xla"), available=lambda: (True, ""))
    m = measure(framework, Network.of(models.get("squeezenet")), 2, Timing(warmup=1, number=1, repeat=2),
                precision=precision, options={"allow_cpu": True})
    assert m.status == "measured", m.reason
    assert 1e-5 < m.rel_error <= TOLERANCE[precision]  # rounded to 16 bits: not float32's error
    assert m.details["conv_precision"] == "DEFAULT"


def test_the_sixteen_bit_weights_and_pool_divisors_keep_the_type():
    jax = pytest.importorskip("jax")
    network = every_operator()
    params = jax_params(network.weights, jax.numpy.bfloat16)
    assert {w.dtype for p in params.values() for w in p.values()} == {jax.numpy.dtype("bfloat16")}
    x = make_input(network.graph, 2, 0).transpose(0, 2, 3, 1).astype(jax.numpy.bfloat16)
    out = jax.jit(jax_forward(network.graph, jax.lax.Precision.DEFAULT))(params, x)
    assert out.dtype == jax.numpy.bfloat16  # no float32 constant promoted it on the way
    expected = run_graph(network.graph, make_input(network.graph, 2, 0), network.weights)
    assert relative_error(np.asarray(out, dtype=np.float64).transpose(0, 3, 1, 2), expected) < 3e-2
