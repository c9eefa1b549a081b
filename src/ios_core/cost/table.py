"""The ``table`` cost: stage latencies looked up by canonical key, for tests and for replays.

A table file is JSON::

    {"format": "ios-core/stage-costs", "version": 1, "label": "table", "costs": {"<digest>": ms, ...}}

where each digest is `ios_core.cost.key.digest` of a stage key. A disk cache written by
`ios_core.cost.cache.CachedCost` (JSON lines) can be replayed too, one space at a time, with
`TableCost.from_cache` (invalid lines skipped, with a warning). A stage missing from the table is an
error that names the stage: a table cost never guesses.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

from ios_core.cost.cache import is_latency, load_entries
from ios_core.cost.key import KeysByGraph, content_space, digest
from ios_core.errors import UserError, json_error
from ios_core.files import write_atomic
from ios_core.ir import Graph
from ios_core.schedule import Stage

FORMAT = "ios-core/stage-costs"
VERSION = 1


class TableError(UserError, ValueError):
    """A table file that cannot be read as one; the message names the file."""


class MissingStageError(UserError, KeyError):
    """The table has no entry for a stage: a table cost never guesses."""

    def __str__(self) -> str:
        return str(self.args[0])


class TableCost:
    """Latencies from a ``digest -> ms`` mapping; ``kind`` is ``"table"``."""

    kind = "table"

    def __init__(self, costs: Mapping[str, float], label: str = "table") -> None:
        self.costs = dict(costs)
        self.label = label
        self._keys = KeysByGraph()
        self.space = content_space({"costs": self.costs}, self.kind)  # by content: an edited table is another space

    def stage_latency(self, graph: Graph, stage: Stage, batch: int) -> float:
        name = digest(self._keys(graph).text(stage, batch))
        try:
            return self.costs[name]
        except KeyError:
            groups = " | ".join(str(g) for g in stage.groups)
            raise MissingStageError(f"table {self.label!r} has no cost for stage [{groups}] at batch {batch}") from None

    @staticmethod
    def load(path: str | os.PathLike) -> TableCost:
        """Read a table file (see the module docstring).

        Raises
        ------
        TableError
            If the file is not UTF-8 JSON of this format and version, or a cost is not a latency.
        """
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except UnicodeDecodeError:
            raise TableError(f"cost table {path}: not a text file (invalid UTF-8)") from None
        except json.JSONDecodeError as error:
            raise TableError(f"cost table {path}: {json_error(error)}") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("version") != VERSION:
            raise TableError(f"cost table {path}: not an {FORMAT} v{VERSION} file")
        costs = data.get("costs")
        if not isinstance(costs, dict) or not all(is_latency(ms) for ms in costs.values()):
            raise TableError(f"cost table {path}: 'costs' must map stage digests to latencies (finite ms >= 0)")
        return TableCost({k: float(v) for k, v in costs.items()}, str(data.get("label", path)))

    @staticmethod
    def from_cache(path: str | os.PathLike, space: str) -> TableCost:
        """Replay the entries of one space of a JSON-lines disk cache."""
        return TableCost(load_entries(path, space)[0], f"{path}:{space}")

    def save(self, path: str | os.PathLike) -> Path:
        data = {"format": FORMAT, "version": VERSION, "label": self.label, "costs": self.costs}
        return write_atomic(path, json.dumps(data, indent=1, sort_keys=True) + "\n")
