"""GPU plumbing: the primary context, streams and events through PyCUDA; capture through cuda.bindings; our kernels.

PyCUDA owns the context (the device's primary one, the context PyTorch and the cuDNN frontend
also use), memory and streams; it has no stream-capture API, so capture and graph launch go
through ``cuda.bindings.driver`` on PyCUDA's stream handles. Our kernels (``cuda/*.cu``) are
compiled once per process and element type (`kernels`: that type's instances alone); `fill_random` is the
one way memory is filled with random values. Imported only when a plan is built.
"""

from __future__ import annotations

import atexit
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pycuda.driver as drv
from cuda.bindings import driver as cu
from pycuda.compiler import SourceModule

from ios_core.engine import channelwise, depthwise, excitation, pooling
from ios_core.engine.elements import ELEMENTS, Element
from ios_core.engine.program import POINTWISE_SIGNATURE

NON_BLOCKING = 1  # CU_STREAM_NON_BLOCKING: no implicit ordering with the legacy default stream
BLOCK = 256  # threads per block of our grid-stride kernels (pointwise, fill)
MAX_BLOCKS = 132 * 16  # their grid's cap: 16 blocks per SM of an H100; the stride loop covers the rest
CONVERT_SIGNATURE = "PPI"  # convert_in_<suffix> and convert_out_<suffix> of pointwise.cu: x, y, n


class CudaError(RuntimeError):
    """A CUDA driver call failed; the message names the call and the error."""


@dataclass(frozen=True)
class DeviceContext:
    """The current GPU: its primary context, name, compute capability and number of multiprocessors."""

    context: drv.Context
    device: drv.Device
    name: str
    capability: tuple[int, int]
    multiprocessors: int

    @property
    def arch(self) -> str:
        return f"sm_{self.capability[0]}{self.capability[1]}"


@cache
def device_context(ordinal: int = 0) -> DeviceContext:
    """Push the device's primary context once per process (popped at exit) and describe the device."""
    drv.init()
    device = drv.Device(ordinal)
    context = device.retain_primary_context()
    context.push()
    atexit.register(_pop, context)
    sms = device.get_attribute(drv.device_attribute.MULTIPROCESSOR_COUNT)
    return DeviceContext(context, device, device.name(), device.compute_capability(), sms)


def _pop(context: drv.Context) -> None:
    try:
        context.synchronize()
        context.pop()
    except drv.Error:
        pass  # the process is ending; the driver releases everything


def check(result: tuple, call: str) -> object:
    """The value(s) a cuda.bindings call returns, or `CudaError` with the driver's message."""
    err, *values = result
    if err != cu.CUresult.CUDA_SUCCESS:
        _, text = cu.cuGetErrorString(err)
        raise CudaError(f"{call} failed: {err.name} ({text.decode() if text else '?'})")
    return values[0] if len(values) == 1 else tuple(values)


def new_stream() -> drv.Stream:
    return drv.Stream(flags=NON_BLOCKING)


def new_event() -> drv.Event:
    return drv.Event(drv.event_flags.DISABLE_TIMING)


def address(memory: drv.DeviceAllocation | None) -> int:
    """The address of an allocation; 0 for none (what cuDNN takes for no workspace)."""
    return int(memory) if memory is not None else 0


def cu_stream(stream: drv.Stream) -> cu.CUstream:
    return cu.CUstream(stream.handle)


class CapturedGraph:
    """An instantiated CUDA graph captured from work enqueued on ``stream`` (and streams forked from it).

    With ``copies`` > 1 the graph runs the captured work that many times, one copy after another:
    the capture is embedded as a chain of child-graph nodes, so the host enqueues the work once.
    """

    def __init__(self, stream: drv.Stream, enqueue, copies: int = 1) -> None:
        self.stream = stream
        check(cu.cuStreamBeginCapture(cu_stream(stream), cu.CUstreamCaptureMode.CU_STREAM_CAPTURE_MODE_GLOBAL),
              "cuStreamBeginCapture")
        try:
            enqueue()
        finally:  # end the capture whatever happened, or the stream stays unusable
            graph = check(cu.cuStreamEndCapture(cu_stream(stream)), "cuStreamEndCapture")
        if copies > 1:
            graph = _chain(graph, copies)
        self.graph = graph
        self.node_count = int(check(cu.cuGraphGetNodes(graph, 0), "cuGraphGetNodes")[1])
        self.exec = check(cu.cuGraphInstantiate(graph, 0), "cuGraphInstantiate")

    def launch(self, stream: drv.Stream | None = None) -> None:
        check(cu.cuGraphLaunch(self.exec, cu_stream(stream or self.stream)), "cuGraphLaunch")

    def close(self) -> None:
        check(cu.cuGraphExecDestroy(self.exec), "cuGraphExecDestroy")
        check(cu.cuGraphDestroy(self.graph), "cuGraphDestroy")


def _chain(graph: cu.CUgraph, copies: int) -> cu.CUgraph:
    """A graph running ``graph`` ``copies`` times in sequence (each child node clones it); ``graph`` is destroyed."""
    chain = check(cu.cuGraphCreate(0), "cuGraphCreate")
    try:
        last = None
        for _ in range(copies):
            after = [] if last is None else [last]
            last = check(cu.cuGraphAddChildGraphNode(chain, after, len(after), graph), "cuGraphAddChildGraphNode")
    except CudaError:
        check(cu.cuGraphDestroy(chain), "cuGraphDestroy")
        raise
    finally:
        check(cu.cuGraphDestroy(graph), "cuGraphDestroy")
    return chain


@dataclass(frozen=True)
class Kernels:
    """Our compiled kernels for one element type, prepared for cheap launches; a family's by its float32 name (what
    the host's choice says, `Element.kernel` maps it to the instance)."""

    element: Element
    pointwise: drv.Function
    pointwise_batch: drv.Function  # independent pointwise tasks side by side, a row of blocks each
    pointwise_sum: drv.Function  # a chain of additions into one output, in one pass
    pool: dict[str, drv.Function]  # by name: the generic kernel and the fast NHWC ones
    depthwise: dict[str, drv.Function]  # by name: the generic kernel and the fast NHWC ones
    fill: drv.Function
    pad: drv.Function
    norm: drv.Function  # LayerNorm and softmax over channels
    excite: dict[str, drv.Function]  # by name: a squeeze-and-excitation's pool and two 1 x 1 convolutions
    convert_in: drv.Function  # float32 to the element type, n contiguous elements (a plan's input)
    convert_out: drv.Function  # the element type to float32 (a plan's output)


def default_kernel_dir() -> Path:
    """``cuda/`` at the root of the ios-core checkout this package is imported from."""
    return Path(__file__).resolve().parents[4] / "cuda"


@cache
def kernels(kernel_dir: str | None = None, element: Element = ELEMENTS["float32"]) -> Kernels:
    """Compile our kernel files (``pointwise.cu``, ``pool.cu``, ``depthwise.cu``, ``pad.cu``, ``norm.cu``,
    ``excite.cu``) once per process for the running GPU, ``element``'s instances alone."""
    folder = Path(kernel_dir) if kernel_dir else default_kernel_dir()
    arch = device_context().arch
    options = ["-O3", f"-DELEMENT_ONLY={element.only}"]

    modules = {  # functions keep their module alive
        file: SourceModule((folder / file).read_text(), arch=arch, no_extern_c=True, options=options,
                           include_dirs=[str(folder)])
        for file in ("pointwise.cu", "pool.cu", "depthwise.cu", "pad.cu", "norm.cu", "excite.cu")
    }

    def load(file: str, name: str, signature: str) -> drv.Function:
        function = modules[file].get_function(element.kernel(name))
        function.prepare(signature)
        return function

    return Kernels(
        element=element,
        pointwise=load("pointwise.cu", "pointwise_f32", POINTWISE_SIGNATURE),
        pointwise_batch=load("pointwise.cu", channelwise.POINTWISE_BATCH, channelwise.POINTWISE_BATCH_SIGNATURE),
        pointwise_sum=load("pointwise.cu", channelwise.POINTWISE_SUM, channelwise.POINTWISE_SUM_SIGNATURE),
        pool={name: load("pool.cu", name, signature) for name, signature in pooling.KERNELS.items()},
        depthwise={name: load("depthwise.cu", name, signature) for name, signature in depthwise.KERNELS.items()},
        fill=load("pointwise.cu", "fill_random_f32", "PII"),
        pad=load("pad.cu", channelwise.PAD, channelwise.PAD_SIGNATURE),
        norm=load("norm.cu", channelwise.NORM, channelwise.NORM_SIGNATURE),
        excite={name: load("excite.cu", name, signature) for name, signature in excitation.KERNELS.items()},
        convert_in=load("pointwise.cu", "convert_in_f32", CONVERT_SIGNATURE),
        convert_out=load("pointwise.cu", "convert_out_f32", CONVERT_SIGNATURE),
    )


def grid(n: int) -> tuple[int, int]:
    """The grid of a grid-stride kernel over ``n`` elements: a block per `BLOCK` of them, at most `MAX_BLOCKS`."""
    return min(-(-n // BLOCK), MAX_BLOCKS), 1


def fill_random(kernels: Kernels, address: int, nbytes: int, seed: int) -> None:
    """Fill ``nbytes`` at ``address`` with values in [-1, 1) of the kernels' element type drawn from ``seed``;
    returns once written."""
    n = nbytes // kernels.element.itemsize
    kernels.fill.prepared_call(grid(n), (BLOCK, 1, 1), address, n, seed)
    drv.Context.synchronize()


@contextmanager
def profiled() -> Iterator[None]:
    """The body between cuProfilerStart and cuProfilerStop: all that a profiler started with its collection off
    (``ncu --profile-from-start off``) profiles."""
    drv.start_profiler()
    try:
        yield
    finally:
        drv.stop_profiler()
