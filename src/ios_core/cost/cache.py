"""A stage-cost cache: each distinct stage (by canonical key) is costed once, in memory and on disk.

The disk cache is a JSON-lines file. Each line is one entry::

    {"space": "simulated/h100/fp32", "key": "<digest>", "ms": 0.0123}

``space`` is the cost kind, device and precision: entries of other spaces in the same file are
kept but ignored, so one file can serve several devices. The file is only ever appended to, a
whole line per ``write`` call, and flushed in batches; a run that is interrupted loses at most
its last unflushed batch, and a torn last line is skipped when the file is loaded. So a long
search can be resumed: a new run loads every complete entry and costs only what is missing.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ios_core.cost.key import KeysByGraph, digest
from ios_core.cost.protocol import StageCost, stage_latencies
from ios_core.ir import Graph
from ios_core.schedule import Stage


def cost_space(kind: str, device: str, precision: str) -> str:
    """The namespace of a cost's numbers: they are only comparable within one kind, device and precision."""
    return f"{kind}/{device}/{precision}"


def load_entries(path: str | os.PathLike, space: str) -> dict[str, float]:
    """The ``digest -> ms`` entries of ``space`` in a JSON-lines cache; a missing file is empty."""
    path = Path(path)
    entries: dict[str, float] = {}
    if not path.exists():
        return entries
    with path.open() as lines:
        for line in lines:
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line torn by an interrupted write: that stage is costed again
            if isinstance(entry, dict) and entry.get("space") == space:
                entries[entry["key"]] = float(entry["ms"])
    return entries


@dataclass
class CacheStats:
    """How often the cache answered (``hits``) and how often it asked the cost beneath it (``misses``)."""

    hits: int = 0
    misses: int = 0
    loaded: int = 0
    cost_seconds: float = 0.0


class CachedCost:
    """Wraps a `StageCost` so that each canonical stage key is costed once.

    Parameters
    ----------
    inner
        The cost that answers on a miss.
    space
        The namespace of ``inner``'s numbers, from `cost_space`.
    path
        A JSON-lines file to load at start and append to; None keeps the cache in memory only.
    flush_every
        Append to ``path`` after this many new entries (and on `close`).
    """

    def __init__(self, inner: StageCost, space: str, path: str | os.PathLike | None = None,
                 flush_every: int = 256) -> None:
        self.inner, self.space, self.kind = inner, space, inner.kind
        self.path = None if path is None else Path(path)
        self.flush_every = flush_every
        self.stats = CacheStats()
        self._keys = KeysByGraph()
        self._known: dict[str, float] = {}
        self._stored = {} if self.path is None else load_entries(self.path, space)
        self.stats.loaded = len(self._stored)
        self._pending: list[str] = []

    def stage_latency(self, graph: Graph, stage: Stage, batch: int) -> float:
        return self.stage_latencies(graph, [stage], batch)[0]

    def stage_latencies(self, graph: Graph, stages: Sequence[Stage], batch: int) -> list[float]:
        """The latencies of ``stages``: each known one from memory or disk, the others in one call to the cost."""
        keys = self._keys(graph)
        texts = [keys.text(stage, batch) for stage in stages]
        missing: dict[str, tuple[Stage, str | None]] = {}  # each distinct unknown stage once, with its digest
        for text, stage in zip(texts, stages, strict=True):
            if text in self._known or text in missing:
                self.stats.hits += 1
                continue
            name = digest(text) if self.path is not None else None
            if name is not None and name in self._stored:
                self.stats.hits += 1
                self._known[text] = self._stored[name]
                continue
            self.stats.misses += 1
            missing[text] = (stage, name)
        if missing:
            start = time.perf_counter()
            answers = stage_latencies(self.inner, graph, [stage for stage, _ in missing.values()], batch)
            self.stats.cost_seconds += time.perf_counter() - start
            for (text, (_, name)), ms in zip(missing.items(), answers, strict=True):
                ms = self._known[text] = float(ms)
                if name is not None:
                    self._pending.append(json.dumps({"space": self.space, "key": name, "ms": ms}) + "\n")
            if len(self._pending) >= self.flush_every:
                self.flush()
        return [self._known[text] for text in texts]

    def flush(self) -> None:
        """Append the pending entries to the disk cache, one whole line per write."""
        if self.path is None or not self._pending:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # O_APPEND: each write lands at the end even if another process appends to the same file.
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            for line in self._pending:
                os.write(fd, line.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        self._pending.clear()

    def close(self) -> None:
        self.flush()

    def __enter__(self) -> CachedCost:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
