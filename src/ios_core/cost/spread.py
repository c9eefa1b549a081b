"""One search's stage measurements spread over the GPUs of a host: one worker process per GPU.

`SpreadCost` is a `StageCost` whose ``stage_latencies`` deals the stages it is asked for (the DP asks
for all the new stages of a state at once) to one worker process per device, each of which sees only
its own GPU (``CUDA_VISIBLE_DEVICES``, set before the worker imports anything that could touch CUDA)
and builds its own cost from the same picklable builder. The DP and the stage cache above it stay as
they are: the cache asks only for stages it does not hold, and records which device measured each.

Costs from different GPUs can be compared only when they come from the same SKU, driver and clocks:
every worker reports its cost's ``space`` (a digest of exactly that environment and the settings,
`ios_core.cost.measured.measured_space`), and a spread whose workers disagree is refused before any
stage is timed.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import traceback
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from typing import Any

from ios_core.cost.protocol import StageCost, end_to_end_latency, measures_end_to_end, stage_latencies
from ios_core.errors import UserError
from ios_core.ir import Graph
from ios_core.schedule import Schedule, Stage

DEVICE_VARIABLE = "CUDA_VISIBLE_DEVICES"

CostBuilder = Callable[[], StageCost]
"""Builds a worker's cost; must pickle (a module-level function or a `functools.partial` of one)."""


class SpreadError(UserError, RuntimeError):
    """The workers cannot be used together: their GPUs differ, or one could not build its cost."""


class WorkerError(RuntimeError):
    """A worker failed while costing stages; the message holds its device and traceback."""


def _serve(device: str, build: CostBuilder, connection: Connection) -> None:
    """A worker's life: build the cost on ``device``, then answer ``(graph key, graph, work, batch)`` requests, the
    work a list of stages or a whole `Schedule` (timed end to end)."""
    os.environ[DEVICE_VARIABLE] = device
    try:
        cost = build()
        connection.send(("ready", cost.kind, getattr(cost, "space", None), measures_end_to_end(cost)))
    except BaseException as error:  # sent back whole: the parent names the device and stops the others
        connection.send(("failed", f"{type(error).__name__}: {error}", traceback.format_exc()))
        return
    graphs: dict[int, Graph] = {}
    while True:
        request = connection.recv()
        if request is None:
            return
        key, graph, work, batch = request
        graph = graphs.setdefault(key, graph) if graph is not None else graphs[key]
        try:
            if isinstance(work, Schedule):
                connection.send(("ok", [end_to_end_latency(cost, graph, work, batch)]))
            else:
                connection.send(("ok", stage_latencies(cost, graph, work, batch)))
        except Exception:
            connection.send(("failed", "", traceback.format_exc()))


class SpreadCost:
    """Stage latencies from one worker process per device; see the module docstring.

    Parameters
    ----------
    build
        Builds each worker's cost (e.g. `functools.partial` of a cost builder with its spec and device profile).
    devices
        One ``CUDA_VISIBLE_DEVICES`` entry per worker (GPU indices or UUIDs); at least one.

    Attributes
    ----------
    last_devices
        The device that measured each stage of the last `stage_latencies` call, in order (what the stage
        cache records beside each latency); after `end_to_end_latency`, the one device that timed the schedule.
    end_to_end
        Whether the workers' cost times whole schedules; the first device does (the GPU a schedule is judged on).
    """

    def __init__(self, build: CostBuilder, devices: Sequence[str]) -> None:
        if not devices or len(set(devices)) != len(devices):
            raise SpreadError(f"a spread needs one or more distinct devices, got {list(devices)}")
        context = multiprocessing.get_context("spawn")  # a fork would share the parent's CUDA state, if any
        self.devices = list(devices)
        self.last_devices: list[str] = []
        self._connections: list[Connection] = []
        self._processes = []
        self._sent: set[tuple[int, str]] = set()
        self._graphs: dict[int, Graph] = {}  # held, so that an id(graph) is never reused while workers know it
        for device in self.devices:
            parent, child = context.Pipe()
            process = context.Process(target=_serve, args=(device, build, child), daemon=True,
                                      name=f"ios-core-cost-{device}")
            process.start()
            child.close()
            self._connections.append(parent)
            self._processes.append(process)
        try:
            self.kind, self.space, self.end_to_end = self._handshake()
        except BaseException:
            self.close()
            raise

    def _handshake(self) -> tuple[str, Any, bool]:
        """Each worker's (kind, space, whether it times whole schedules): the same for all, or refused."""
        answers = {}
        for device, connection in zip(self.devices, self._connections, strict=True):
            answer = self._receive(device, connection)
            if answer[0] == "failed":
                raise SpreadError(f"device {device}: the worker could not build its cost: {answer[1]}")
            answers[device] = answer[1:]
        if len(set(answers.values())) > 1:
            found = "; ".join(f"device {d}: {kind} {space}" for d, (kind, space, _) in answers.items())
            raise SpreadError(
                "the devices' costs are not comparable (a different GPU model, driver, clocks or settings): " + found
            )
        return next(iter(answers.values()))

    def stage_latency(self, graph: Graph, stage: Stage, batch: int) -> float:
        return self.stage_latencies(graph, [stage], batch)[0]

    def end_to_end_latency(self, graph: Graph, schedule: Schedule, batch: int) -> float:
        """``schedule`` timed as a whole by the first device's worker."""
        self._send(0, graph, schedule, batch)
        device = self.devices[0]
        answer = self._receive(device, self._connections[0])
        if answer[0] == "failed":
            raise WorkerError(f"a cost worker failed:\ndevice {device}:\n{answer[2]}")
        self.last_devices = [device]
        return answer[1][0]

    def stage_latencies(self, graph: Graph, stages: Sequence[Stage], batch: int) -> list[float]:
        """The latencies of ``stages``: dealt round-robin to the workers, which all time at once."""
        shares = [list(range(w, len(stages), len(self.devices))) for w in range(len(self.devices))]
        busy = [(w, share) for w, share in enumerate(shares) if share]
        for w, share in busy:
            self._send(w, graph, [stages[i] for i in share], batch)
        latencies: list[float] = [0.0] * len(stages)
        self.last_devices = [""] * len(stages)
        failures = []
        for w, share in busy:  # every worker answers before any failure is raised, so none is left mid-reply
            device = self.devices[w]
            answer = self._receive(device, self._connections[w])
            if answer[0] == "failed":
                failures.append(f"device {device}:\n{answer[2]}")
                continue
            for i, ms in zip(share, answer[1], strict=True):
                latencies[i], self.last_devices[i] = ms, device
        if failures:
            raise WorkerError("a cost worker failed:\n" + "\n".join(failures))
        return latencies

    def _send(self, worker: int, graph: Graph, work: list[Stage] | Schedule, batch: int) -> None:
        self._graphs[id(graph)] = graph
        device = self.devices[worker]
        first = (id(graph), device) not in self._sent  # the graph travels once per worker
        self._connections[worker].send((id(graph), graph if first else None, work, batch))
        self._sent.add((id(graph), device))

    def _receive(self, device: str, connection: Connection) -> tuple:
        try:
            return connection.recv()
        except EOFError:
            raise WorkerError(f"the cost worker of device {device} died (killed, or out of memory?)") from None

    def close(self) -> None:
        """Stop the workers (each finishes the request it is on); the cost cannot be used afterwards."""
        for connection in self._connections:
            with contextlib.suppress(BrokenPipeError, OSError):  # that worker is gone already
                connection.send(None)
            connection.close()
        for process in self._processes:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
        self._connections, self._processes = [], []

    def __enter__(self) -> SpreadCost:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
