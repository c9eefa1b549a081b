"""The seven figures of the IOS paper's experiments, drawn from measurement records.

Each figure is a function of the records it is given and an output prefix; it writes
``<prefix>.png``, ``.pdf`` and ``.csv`` (the numbers behind it). `FIGURES` names them, in the
paper's order; `make` reads record files and draws one. The data source (simulated device or GPU
name) is in every title, and unavailable measurements are shown as "n/a" with their reason.
"""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from ios_core.errors import UserError
from ios_core.figures.common import MixedSourcesError, frame, source_label, themed
from ios_core.figures.latency import batch_sizes, frameworks, intra_inter, schedules
from ios_core.figures.search import pruning, specialization
from ios_core.figures.utilization import utilization
from ios_core.tracking import Record, read, recording


def _from_frame(draw: Callable) -> Callable:
    @functools.wraps(draw)  # its docstring, and its signature for the options check in `make`
    def from_records(records: list[Record], prefix: str | os.PathLike, **options) -> list[Path]:
        return draw(frame(records), prefix, **options)

    return from_records


FIGURES: dict[str, Callable[..., list[Path]]] = {
    "schedules": _from_frame(schedules),
    "frameworks": _from_frame(frameworks),
    "utilization": utilization,
    "specialization": _from_frame(specialization),
    "pruning": _from_frame(pruning),
    "batch_sizes": _from_frame(batch_sizes),
    "intra_inter": _from_frame(intra_inter),
}


def make(name: str, paths: Iterable[str | os.PathLike], prefix: str | os.PathLike,
         record: str | os.PathLike | None = None, **options) -> list[Path]:
    """Draw figure ``name`` from the record files ``paths``; returns the PNG, PDF and CSV written.

    With ``record``, also write a ``figure`` record there whose artifacts are the three files, so
    that the figure is kept in MLflow beside the measurements it shows.

    Raises
    ------
    UserError
        If ``name`` is no figure, a record file is not a record (`RecordError`, naming it) or the records mix
        simulated and measured numbers (`MixedSourcesError`); `OSError` if a file cannot be read.
    """
    if name not in FIGURES:
        raise UserError(f"unknown figure {name!r}; known figures: {', '.join(FIGURES)}")
    takes = list(inspect.signature(FIGURES[name]).parameters)[2:]  # after the records (or frame) and the prefix
    for option in options:
        if option not in takes:
            raise UserError(f"figure {name} has no option {option!r}; its options: {', '.join(takes) or 'none'}")
    paths = list(paths)
    records = [read(p) for p in paths]
    available = {r.tags.get("source", "") for r in records if r.available}
    params = {"figure": name, "records": len(records), **options}
    tags = {"source": ",".join(sorted(available)) or "none", "experiment": name,
            "title_source": source_label(frame(records))}
    with recording(f"figure/{name}", "figure", params, tags, record) as figure_record, themed():
        written = FIGURES[name](records, prefix, **options)
        figure_record.artifacts += [str(p) for p in written]
    return written


__all__ = ["FIGURES", "MixedSourcesError", "frame", "make", "source_label"]
