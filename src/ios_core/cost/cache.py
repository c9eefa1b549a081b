"""A stage-cost cache: each distinct stage (by canonical key) is costed once, in memory and on disk.

The disk cache is a JSON-lines file. Each line is one entry::

    {"space": "simulated/h100/fp32/<inputs digest>", "key": "<stage digest>", "ms": 0.0123}

and, where a cost spread over several GPUs measured the stage, ``"by"``: the device that did. A cost that also
times whole schedules (``end_to_end``, `ios_core.cost.protocol.EndToEndCost`) has their latencies in the same file,
keyed by the digest of the schedule's stage keys in run order (`end_to_end_text`).

``key`` is the digest of the stage's canonical key (`ios_core.cost.key`): what the stage computes,
batch size included. ``space`` (`ios_core.cost.key.content_space`) is everything else the number
depends on: a few readable names, then a digest of *all* the cost's inputs -- for ``simulated``
the whole device profile, the precision and the model's revision; for ``measured`` the GPU, driver,
CUDA and cuDNN versions, precision, layout, engine choice, timing and profile revision (see each
cost's ``space``). So a changed input never finds an old number: it is costed again. Entries of
other spaces in the same file are kept but ignored, so one file can serve several devices.

Every line read back is checked: valid UTF-8 JSON, a string ``space`` and ``key``, and an ``ms``
that `is_latency` (a finite number >= 0; ``true`` is not a number). Other lines -- a torn write,
hand edits, a broken generator -- are skipped and counted, reported in one warning line, and
their stages costed again.

The file is only ever appended to, under an exclusive lock, all pending lines in one write, in
batches; a run that is interrupted loses at most its last batch. A torn last line (no newline) is
cut off before the next append, so a new entry is never glued onto it. So a long search can be
resumed: a new run loads every complete entry and costs only what is missing. A cache that cannot
be written (a full disk, no permission) is said once and the search goes on with it in memory.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ios_core.cost.key import KeysByGraph, StageKeys, digest
from ios_core.cost.protocol import StageCost, end_to_end_latency, measures_end_to_end, stage_latencies
from ios_core.errors import warn
from ios_core.ir import Graph
from ios_core.schedule import Schedule, Stage

TAIL_CHUNK = 1 << 16  # bytes read at a time, backwards, to find the end of the last whole line


def is_latency(value: object) -> bool:
    """Whether ``value`` can be a cached latency in ms: a finite ``int`` or ``float`` >= 0 (a ``bool`` is not).

    0 is a real answer: a stage with no work (an identity written in place) costs nothing.
    """
    return type(value) in (int, float) and math.isfinite(value) and value >= 0


def parse_entry(line: bytes) -> tuple[str, str, float] | None:
    """The ``(space, key, ms)`` of one cache line, or None if it is not a valid entry (see the module)."""
    try:
        entry = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(entry, dict):
        return None
    space, key, ms = entry.get("space"), entry.get("key"), entry.get("ms")
    if not (isinstance(space, str) and isinstance(key, str) and is_latency(ms)):
        return None
    return space, key, float(ms)


def load_entries(path: str | os.PathLike, space: str) -> tuple[dict[str, float], int]:
    """The ``digest -> ms`` entries of ``space`` in a JSON-lines cache, and how many lines of the file were
    invalid (of any space; a torn last line too). A missing file is empty; invalid lines are warned of once."""
    path = Path(path)
    if not path.exists():
        return {}, 0
    with path.open("rb") as file:
        fcntl.flock(file, fcntl.LOCK_SH)  # an append in progress (under its exclusive lock) is not read as torn
        *lines, torn = file.read().split(b"\n")  # torn: what follows the last newline, b"" if none
    entries: dict[str, float] = {}
    invalid = int(bool(torn))
    for line in lines:
        if not line.strip():
            continue
        parsed = parse_entry(line)
        if parsed is None:
            invalid += 1
        elif parsed[0] == space:
            entries[parsed[1]] = parsed[2]
    if invalid:
        warn(f"stage-cost cache {path}: skipped {invalid} invalid or torn line(s); their stages are costed again")
    return entries, invalid


def cut_torn_tail(fd: int) -> None:
    """Truncate the file open at ``fd`` after its last newline, dropping a torn last line if it has one."""
    end = os.fstat(fd).st_size
    if end == 0 or os.pread(fd, 1, end - 1) == b"\n":
        return
    while end > 0:
        start = max(0, end - TAIL_CHUNK)
        newline = os.pread(fd, end - start, start).rfind(b"\n")
        if newline >= 0:
            os.ftruncate(fd, start + newline + 1)
            return
        end = start
    os.ftruncate(fd, 0)


def append_lines(path: Path, data: bytes) -> None:
    """Append whole lines to ``path`` in one locked write, after cutting a torn last line (see the module)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        # The lock keeps another process appending to the same file from landing between the cut and our write.
        fcntl.flock(fd, fcntl.LOCK_EX)
        cut_torn_tail(fd)
        while data:
            data = data[os.write(fd, data):]
        os.fsync(fd)
    finally:
        os.close(fd)  # releases the lock


END_TO_END_REVISION = 2
"""Bumped whenever how a whole schedule is timed changes, so that older end-to-end times are never mixed in:
2 -- the measured cost replays the plan for `ios_core.engine.SETTLE_MS` first."""


def end_to_end_text(keys: StageKeys, schedule: Schedule, batch: int) -> str:
    """The canonical text of a whole schedule timed end to end: its stages' keys in run order, which matters."""
    return f"end-to-end r{END_TO_END_REVISION}\n" + "\n".join(keys.text(stage, batch) for stage in schedule.stages)


@dataclass
class CacheStats:
    """How often the cache answered (``hits``) and asked the cost beneath it (``misses``); entries ``loaded`` from
    disk and lines of the disk cache skipped as ``invalid``."""

    hits: int = 0
    misses: int = 0
    loaded: int = 0
    invalid: int = 0
    cost_seconds: float = 0.0


class CachedCost:
    """Wraps a `StageCost` so that each canonical stage key is costed once.

    Parameters
    ----------
    inner
        The cost that answers on a miss.
    space
        The namespace of ``inner``'s numbers: its ``space`` (`ios_core.cost.key.content_space` of all its inputs).
    path
        A JSON-lines file to load at start and append to; None keeps the cache in memory only.
    flush_every
        Append to ``path`` after this many new entries (and on `close`).
    """

    def __init__(self, inner: StageCost, space: str, path: str | os.PathLike | None = None,
                 flush_every: int = 256) -> None:
        self.inner, self.space, self.kind = inner, space, inner.kind
        self.end_to_end = measures_end_to_end(inner)
        self.path = None if path is None else Path(path)
        self.flush_every = flush_every
        self.stats = CacheStats()
        self._keys = KeysByGraph()
        self._known: dict[str, float] = {}
        self._stored, self.stats.invalid = ({}, 0) if self.path is None else load_entries(self.path, space)
        self.stats.loaded = len(self._stored)
        self._pending: list[str] = []
        self._writable = self.path is not None

    def stage_latency(self, graph: Graph, stage: Stage, batch: int) -> float:
        return self.stage_latencies(graph, [stage], batch)[0]

    def stage_latencies(self, graph: Graph, stages: Sequence[Stage], batch: int) -> list[float]:
        """The latencies of ``stages``: each known one from memory or disk, the others in one call to the cost."""
        keys = self._keys(graph)
        texts = [keys.text(stage, batch) for stage in stages]
        missing: dict[str, tuple[Stage, str | None]] = {}  # each distinct unknown stage once, with its digest
        for text, stage in zip(texts, stages, strict=True):
            if text in missing:
                self.stats.hits += 1
                continue
            known, name = self._lookup(text)
            if known is None:
                missing[text] = (stage, name)
        if missing:
            start = time.perf_counter()
            answers = stage_latencies(self.inner, graph, [stage for stage, _ in missing.values()], batch)
            self.stats.cost_seconds += time.perf_counter() - start
            # A cost spread over several GPUs says which one measured each stage (`ios_core.cost.spread`).
            devices = getattr(self.inner, "last_devices", None) or [None] * len(answers)
            for (text, (_, name)), ms, device in zip(missing.items(), answers, devices, strict=True):
                self._remember(text, name, ms, device)
        return [self._known[text] for text in texts]

    def end_to_end_latency(self, graph: Graph, schedule: Schedule, batch: int) -> float:
        """``schedule``'s latency as a whole (`ios_core.cost.protocol.end_to_end_latency`), timed once per schedule
        where the cost beneath times whole schedules; otherwise the sum of its stages', each from the cache."""
        if not self.end_to_end:
            return sum(self.stage_latencies(graph, schedule.stages, batch))
        text = end_to_end_text(self._keys(graph), schedule, batch)
        known, name = self._lookup(text)
        if known is not None:
            return known
        start = time.perf_counter()
        ms = end_to_end_latency(self.inner, graph, schedule, batch)
        self.stats.cost_seconds += time.perf_counter() - start
        return self._remember(text, name, ms, (getattr(self.inner, "last_devices", None) or [None])[0])

    def _lookup(self, text: str) -> tuple[float | None, str | None]:
        """The latency of a canonical ``text`` from memory or disk (None if neither has it, a miss), counted, and
        its digest on disk where it must be costed (None in memory only, or when found in memory)."""
        if text in self._known:
            self.stats.hits += 1
            return self._known[text], None
        name = digest(text) if self.path is not None else None
        if name is not None and name in self._stored:
            self.stats.hits += 1
            self._known[text] = self._stored[name]
            return self._known[text], name
        self.stats.misses += 1
        return None, name

    def _remember(self, text: str, name: str | None, ms: float, device: str | None) -> float:
        ms = self._known[text] = float(ms)
        # A failed measurement (inf) is remembered for this run only: the next one tries it again.
        if self._writable and is_latency(ms):
            entry = {"space": self.space, "key": name, "ms": ms} | ({"by": device} if device else {})
            self._pending.append(json.dumps(entry) + "\n")
            if len(self._pending) >= self.flush_every:
                self.flush()
        return ms

    def flush(self) -> None:
        """Append the pending entries to the disk cache; if it cannot be written, say so once and go on in memory."""
        if not self._pending:
            return
        try:
            append_lines(self.path, "".join(self._pending).encode())
        except OSError as error:
            self._writable = False
            warn(f"stage-cost cache {self.path}: cannot write ({error.strerror or error}); "
                 "going on with the cache in memory only")
        self._pending.clear()

    def close(self) -> None:
        """Write what is pending, and close the cost beneath where it holds something (a spread's workers)."""
        self.flush()
        close_inner = getattr(self.inner, "close", None)
        if close_inner is not None:
            close_inner()

    def __enter__(self) -> CachedCost:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
