"""A fake PyCUDA, cuDNN frontend and cuda.bindings that record every call, so the engine's GPU half runs on a CPU.

`FakeGpu` puts the fakes in ``sys.modules``, imports ``ios_core.engine.gpu`` afresh against them, and swaps
the device's context, our compiled kernels, CUDA-graph capture and cuDNN's graph building for recorders:
every allocation, upload, kernel launch, cuDNN execution, event and capture lands in ``calls`` as a tuple.
Addresses are ``Alloc.index * REGION + offset``, so a pointer says which allocation it lies in. ``close``
drops the modules imported against the fakes and restores whatever was there before (a real GPU run may
share the session).
"""

from __future__ import annotations

import importlib
import sys
import types
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import ios_core.engine  # noqa: F401 -- FakeGpu saves and restores its ``gpu`` attribute

REGION = 1 << 40
GPU_MODULES = ("pycuda", "pycuda.driver", "pycuda.compiler", "cudnn", "cuda", "cuda.bindings", "cuda.bindings.driver")


@dataclass
class Recorder:
    """Every call made on the fake GPU, in order, and the allocations by index."""

    calls: list[tuple] = field(default_factory=list)
    allocs: dict[int, Alloc] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    elapsed_ms: float = 0.75  # what every pair of timing events reads

    def next(self, kind: str) -> int:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        return self.counts[kind]

    def where(self, address: int) -> tuple[int, int]:
        """``(allocation index, offset)`` of an address."""
        return address // REGION, address % REGION


class Alloc:
    def __init__(self, recorder: Recorder, size: int, host: np.ndarray | None = None) -> None:
        self.recorder, self.index, self.size, self.host = recorder, recorder.next("alloc"), size, host
        self.freed = False
        recorder.allocs[self.index] = self
        recorder.calls.append(("alloc", self.index, size))

    def __int__(self) -> int:
        return self.index * REGION

    def free(self) -> None:
        self.freed = True
        self.recorder.calls.append(("free", self.index))


def _driver(recorder: Recorder) -> types.ModuleType:
    drv = types.ModuleType("pycuda.driver")

    class Stream:
        def __init__(self, flags: int = 0) -> None:
            self.handle = recorder.next("stream")

        def synchronize(self) -> None:
            recorder.calls.append(("sync stream", self.handle))

        def wait_for_event(self, event: Any) -> None:
            recorder.calls.append(("wait", self.handle, event.id))

    class Event:
        def __init__(self, flags: int | None = None) -> None:
            self.id = recorder.next("event")

        def record(self, stream: Any = None) -> None:
            recorder.calls.append(("record", self.id, getattr(stream, "handle", None)))

        def synchronize(self) -> None:
            recorder.calls.append(("sync event", self.id))

        def time_till(self, other: Any) -> float:
            return recorder.elapsed_ms

    class Context:
        @staticmethod
        def synchronize() -> None:
            recorder.calls.append(("sync context",))

    drv.mem_alloc = lambda size: Alloc(recorder, size)
    drv.to_device = lambda host: Alloc(recorder, host.nbytes, np.array(host))
    drv.memset_d32 = lambda memory, value, count: recorder.calls.append(("memset", int(memory), value, count))
    drv.memset_d16 = lambda memory, value, count: recorder.calls.append(("memset16", int(memory), value, count))
    drv.memcpy_htod = lambda address, host: recorder.calls.append(("htod", int(address), host.nbytes))
    drv.memcpy_dtoh = lambda host, address: recorder.calls.append(("dtoh", int(address), host.nbytes))
    drv.get_driver_version = lambda: 13000
    drv.Stream, drv.Event, drv.Context, drv.Error = Stream, Event, Context, RuntimeError
    drv.event_flags = types.SimpleNamespace(DISABLE_TIMING=2)
    return drv


def _modules(recorder: Recorder) -> dict[str, types.ModuleType]:
    modules = {name: types.ModuleType(name) for name in GPU_MODULES}
    modules["pycuda.driver"] = _driver(recorder)
    modules["pycuda"].driver, modules["pycuda"].compiler = modules["pycuda.driver"], modules["pycuda.compiler"]
    modules["pycuda.compiler"].SourceModule = object
    modules["cuda"].bindings = modules["cuda.bindings"]
    modules["cuda.bindings"].driver = modules["cuda.bindings.driver"]
    cudnn = modules["cudnn"]
    cudnn.create_handle = lambda: ("handle", recorder.next("handle"))
    cudnn.set_stream = lambda handle, stream: recorder.calls.append(("set stream", handle, stream))
    cudnn.backend_version_string = lambda: "9.19.0"
    # the frontend's graph type: its conv_fprop's overloads (a pybind docstring) take pre and post padding
    cudnn.pygraph = types.SimpleNamespace(conv_fprop=types.SimpleNamespace(
        __doc__="conv_fprop(image, weight, pre_padding=[], post_padding=[], stride=[], dilation=[])"))
    return modules


def launch_parts(call: tuple) -> list[tuple[str, tuple]]:
    """A recorded launch as ``(kernel, arguments)`` parts: its own; a batch's (`channelwise.pointwise_batch`) parts,
    each the arguments of ``pointwise_f32`` it stands for; a sum's (`channelwise.pointwise_sum`) one record."""
    from ios_core.engine import channelwise

    if call[1] == channelwise.POINTWISE_BATCH:
        table = np.frombuffer(call[5][0], channelwise.POINTWISE_PART)[: call[2][1]]
        return [("pointwise_f32", part) for part in table.tolist()]
    if call[1] == channelwise.POINTWISE_SUM:
        return [(call[1], np.frombuffer(call[5][0], channelwise.POINTWISE_SUM_RECORD)[0].tolist())]
    return [(call[1], call[5])]


class Kernel:
    """One of our kernels: records its launches."""

    def __init__(self, recorder: Recorder, name: str) -> None:
        self.recorder, self.name = recorder, name

    def prepared_async_call(self, grid: tuple, block: tuple, stream: Any, *args: int) -> None:
        self.recorder.calls.append(("kernel", self.name, grid, block, stream.handle, args))

    def prepared_call(self, grid: tuple, block: tuple, *args: int) -> None:
        self.recorder.calls.append(("kernel now", self.name, grid, block, args))


class CudnnGraph:
    """A built cuDNN graph: three candidate engines, a workspace that grows with the kernel's size."""

    def __init__(self, recorder: Recorder, geometry: Any) -> None:
        self.recorder, self.geometry = recorder, geometry

    def get_execution_plan_count(self) -> int:
        return 3

    def get_plan_name_at_index(self, index: int) -> str:
        return f"engine{index}"

    def build_plan_at_index(self, index: int) -> None:
        pass

    def build_plans(self) -> None:
        pass

    def get_workspace_size(self) -> int:
        return 0 if self.geometry.w_dims[2] == 1 else 4096 * self.geometry.w_dims[2]

    def execute(self, pack: dict, workspace: int, handle: Any = None) -> None:
        self.recorder.calls.append(("cudnn", handle, tuple(sorted(pack.items())), workspace))


class Captured:
    """A CUDA graph: the capture enqueues the work once (recorded between two marks); a launch is recorded."""

    def __init__(self, recorder: Recorder, stream: Any, enqueue: Any, copies: int = 1) -> None:
        self.recorder, self.stream, self.copies, self.node_count = recorder, stream, copies, 1
        recorder.calls.append(("capture", stream.handle, copies))
        enqueue()
        recorder.calls.append(("captured", stream.handle))

    def launch(self, stream: Any = None) -> None:
        self.recorder.calls.append(("graph launch", (stream or self.stream).handle, self.copies))

    def close(self) -> None:
        self.recorder.calls.append(("graph close",))


class FakeGpu:
    """The engine's GPU half imported against the fakes (see the module); ``engine`` holds its modules by name."""

    def __init__(self) -> None:
        self.recorder = Recorder()
        self._saved = {name: module for name, module in sys.modules.items() if _ours(name)}
        self._saved_fakes = {name: sys.modules.get(name) for name in GPU_MODULES}
        self._package = getattr(sys.modules["ios_core.engine"], "gpu", None)
        for name in self._saved:
            del sys.modules[name]
        sys.modules.update(_modules(self.recorder))
        self.engine = {name: importlib.import_module(f"ios_core.engine.gpu.{name}")
                       for name in ("device", "convs", "launch", "plan", "stageplan", "timing", "environment")}
        self._swap(self.engine["device"], self.engine["convs"])

    def _swap(self, device: Any, convs: Any) -> None:
        from ios_core.engine import channelwise, depthwise, excitation, pooling
        from ios_core.engine.elements import ELEMENTS

        recorder = self.recorder
        context = types.SimpleNamespace(synchronize=lambda: recorder.calls.append(("sync context",)))
        current = device.DeviceContext(context, None, "Fake H100", (9, 0), 132)

        def kernels(kernel_dir: str | None = None, element: Any = ELEMENTS["float32"]) -> Any:
            """Each kernel records its launches under its instance's name for ``element`` (``pointwise_f16``)."""

            def kernel(name: str) -> Kernel:
                return Kernel(recorder, element.kernel(name))

            return device.Kernels(element=element, pointwise=kernel("pointwise_f32"),
                                  pointwise_batch=kernel(channelwise.POINTWISE_BATCH),
                                  pointwise_sum=kernel(channelwise.POINTWISE_SUM),
                                  pool={name: kernel(name) for name in pooling.KERNELS},
                                  depthwise={name: kernel(name) for name in depthwise.KERNELS},
                                  fill=kernel("fill_random_f32"), pad=kernel("pad_f32"), norm=kernel("norm_f32"),
                                  excite={name: kernel(name) for name in excitation.KERNELS},
                                  convert_in=kernel("convert_in_f32"), convert_out=kernel("convert_out_f32"))

        device.device_context = lambda ordinal=0: current
        device.kernels = kernels
        device.CapturedGraph = lambda stream, enqueue, copies=1: Captured(recorder, stream, enqueue, copies)
        convs._graph = lambda geometry, fused, handle: _cudnn_graph(recorder, geometry, fused)

    def close(self) -> None:
        for name in [name for name in sys.modules if _ours(name)]:
            del sys.modules[name]
        for name, module in self._saved_fakes.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
        sys.modules.update(self._saved)
        engine = sys.modules["ios_core.engine"]
        if self._package is None:
            vars(engine).pop("gpu", None)
        else:
            engine.gpu = self._package


def _ours(name: str) -> bool:
    return name == "ios_core.engine.gpu" or name.startswith("ios_core.engine.gpu.")


def _cudnn_graph(recorder: Recorder, geometry: Any, fused: bool) -> tuple[CudnnGraph, tuple]:
    """Fusing bias, addend and activation fails for about half the geometries (by a stable hash of the kernel's
    shape, the activation and whether there is an addend): every path of the launcher gets taken."""
    if fused and zlib.crc32(repr((geometry.w_dims, geometry.act, geometry.addend_strides is None)).encode()) % 2:
        raise RuntimeError("no fused engine for this geometry")
    addend = "Z" if fused and geometry.addend_strides is not None else None
    return CudnnGraph(recorder, geometry), ("X", "W", "B" if fused else None, addend, "Y")
