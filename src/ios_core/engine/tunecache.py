"""The autotuning cache: the fastest cuDNN engine of each convolution geometry, kept across runs in a JSON file.

The file is one JSON object::

    {"<space>|<fused>|<geometry>": {"engine": "<cuDNN plan name>", "ms": 0.0133, "heuristic_ms": 0.0137}, ...}

A key is everything a winner depends on. ``space`` (`tune_space`) reads ``<GPU>/cudnn <version>/<digest>``,
the digest (`ios_core.cost.key.content_space`) being of the GPU's name, driver, CUDA and cuDNN versions
(`ios_core.gpu.ENVIRONMENT_KEYS`) and of how candidates are chosen (`WORKSPACE_LIMIT`,
`CANDIDATE_RUNS`, `CANDIDATE_REPLAYS`, `TUNE_REVISION`); ``fused`` says whether bias and activation are in
the cuDNN graph; ``geometry`` is the geometry's JSON (`ios_core.engine.gpu.convs.Geometry.key`, precision
included). So a changed input never finds an old winner. Entries of other spaces are kept: one file can
serve several GPUs.

Every entry read back is checked (a plan name, and times that `ios_core.cost.cache.is_latency`); invalid
ones -- or a file that is no JSON object at all -- are skipped with one warning and tuned again. The
file is replaced whole on each save; a save that fails (a full disk) is said once and tuning goes on
in memory. Importable without a GPU.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ios_core.cost.cache import is_latency
from ios_core.cost.key import content_space
from ios_core.errors import UserError, warn
from ios_core.files import write_atomic
from ios_core.gpu import environment_inputs

WORKSPACE_LIMIT = 256 << 20  # bytes: no engine that needs more is considered
CANDIDATE_RUNS = 4  # executions of a candidate captured back to back in one CUDA graph
CANDIDATE_REPLAYS = 3  # timed replays of that graph, after one untimed
TUNE_REVISION = 1
"""Bumped whenever how a winner is chosen changes beyond the numbers above, so older winners are not reused."""


def tune_space(environment: Mapping[str, Any]) -> str:
    """The namespace of the winners found on the GPU ``environment`` describes (see the module docstring)."""
    inputs = {"environment": environment_inputs(environment), "workspace_limit": WORKSPACE_LIMIT,
              "runs": CANDIDATE_RUNS, "replays": CANDIDATE_REPLAYS, "revision": TUNE_REVISION}
    return content_space(inputs, str(environment["name"]), f"cudnn {environment['cudnn']}")


def is_winner(entry: object) -> bool:
    """Whether ``entry`` is a valid winner: a non-empty plan name, its time and the heuristic choice's."""
    return (isinstance(entry, dict) and isinstance(entry.get("engine"), str) and entry["engine"] != ""
            and is_latency(entry.get("ms")) and is_latency(entry.get("heuristic_ms")))


def read_winners(path: Path) -> tuple[dict[str, dict], str | None]:
    """The valid winners of a tune file, and what was wrong with the rest (None if nothing)."""
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        data = None
    if not isinstance(data, dict):
        return {}, "not a JSON object of winners; every geometry is tuned again"
    winners = {key: entry for key, entry in data.items() if is_winner(entry)}
    skipped = len(data) - len(winners)
    return winners, f"skipped {skipped} invalid entries; their geometries are tuned again" if skipped else None


@dataclass
class TuneCache:
    """Autotuning winners by key (`key`) in ``space``, kept in a JSON file when ``path`` is given."""

    space: str
    path: Path | None = None
    entries: dict[str, dict] = field(default_factory=dict)
    writable: bool = True

    @classmethod
    def load(cls, path: str | os.PathLike | None, environment: Mapping[str, Any]) -> TuneCache:
        """The winners kept at ``path`` (none if it is None or missing), for the GPU ``environment`` describes."""
        space = tune_space(environment)
        if path is None or not Path(path).exists():
            return cls(space, Path(path) if path else None)
        winners, problem = read_winners(Path(path))
        if problem is not None:
            warn(f"tune cache {path}: {problem}")
        return cls(space, Path(path), winners)

    def key(self, fused: bool, geometry: str) -> str:
        """The key of the winner of ``geometry`` (its JSON), with bias and activation in the graph or not."""
        return f"{self.space}|{fused}|{geometry}"

    def save(self) -> None:
        """Replace the file with every winner; if it cannot be written, say so once and keep them in memory."""
        if self.path is None or not self.writable:
            return
        try:
            write_atomic(self.path, json.dumps(self.entries, indent=1, sort_keys=True))
        except UserError as error:
            self.writable = False
            reason = getattr(error.__cause__, "strerror", None) or error
            warn(f"tune cache {self.path}: cannot write ({reason}); going on with the winners in memory only")
