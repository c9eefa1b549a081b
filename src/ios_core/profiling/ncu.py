"""Nsight Compute's raw CSV read into one row per kernel, and the kernels laid out on a timeline.

The profiled program labels every group's launches with an NVTX push/pop range ``ios/r<run>/s<stage>/g<group>``
(`label`); ``ncu --nvtx`` keeps the range each kernel was launched in, so a kernel's row says which run, stage and
group it belongs to whatever else ncu writes in that cell. Kernels of one group keep their launch order (ncu's ``ID``).

ncu replays each kernel alone (it serializes them, whatever their streams), so a kernel's duration and active warps
are its own, in isolation. `timeline` lays them out as the schedule runs them: a stage's groups start together, each
group's kernels back to back, and the next stage starts when the stage's longest group ends. `occupancy` adds the
groups' active warps at each instant -- an estimate of the device's, exact only where concurrent kernels would not
slow each other.
"""

from __future__ import annotations

import io
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from ios_core.tracking import Record

DURATION = "gpu__time_duration.sum"
WARPS_ACTIVE = "sm__warps_active.avg.pct_of_peak_sustained_active"  # of the cycles an SM had work: per-SM occupancy
WARPS_ELAPSED = "sm__warps_active.avg.pct_of_peak_sustained_elapsed"  # of all SMs' elapsed cycles: the device's
METRICS = (WARPS_ACTIVE, WARPS_ELAPSED, DURATION)
PREFIX = "ios"
_LABEL = re.compile(rf"{PREFIX}/r(\d+)/s(\d+)/g(\d+)")
_TO_US = {"ns": 1e-3, "nsecond": 1e-3, "us": 1.0, "usecond": 1.0, "ms": 1e3, "msecond": 1e3, "s": 1e6, "second": 1e6}
SERIES = {"kernel_stage": "stage", "kernel_group": "group", "kernel_order": "order",
          "kernel_duration_us": "duration_us", "kernel_warps_active_pct": "warps_active_pct",
          "kernel_warps_elapsed_pct": "warps_elapsed_pct"}
"""A ``warps`` record's per-kernel series, and the `per_kernel` column each holds (`fill`, `kernels_of`)."""
COLUMNS = ["run", "stage", "group", "order", "kernel", "duration_us", "warps_active_pct", "warps_elapsed_pct"]


class NcuCsvError(ValueError):
    """A CSV that is not ncu's raw page of the metrics asked for; the message says what is missing."""


def label(run: int, stage: int, group: int) -> str:
    """The NVTX range a group's launches run in."""
    return f"{PREFIX}/r{run}/s{stage}/g{group}"


def command(ncu: str, report: str | os.PathLike, target: list[str]) -> list[str]:
    """Profile ``target`` into ``report``: only between its cuProfilerStart and Stop, NVTX kept, clocks left alone
    (``--clock-control none``: the lent machines' clocks are not ours to lock), caches left warm (``--cache-control
    none``: ncu flushes them before every kernel by default, and the H100's first run, flushed, added Inception V3's
    kernels up to 3.1 ms where the plan runs in 0.7: a replayed plan finds its weights and inputs in L2)."""
    return [ncu, "--profile-from-start", "off", "--nvtx", "--clock-control", "none", "--cache-control", "none",
            "--metrics", ",".join(METRICS),
            "--force-overwrite", "--export", str(report), *target]


def export_command(ncu: str, report: str | os.PathLike) -> list[str]:
    """Print ``report``'s raw page as CSV: a header row, a units row, a row per kernel."""
    return [ncu, "--import", str(report), "--csv", "--page", "raw", "--print-units", "base"]


def _number(cell: object) -> float:
    text = str(cell).strip().replace(",", "")  # ncu writes thousands separators
    try:
        return float(text)
    except ValueError:
        return float("nan")


def read_csv(source: str | os.PathLike | io.StringIO) -> pd.DataFrame:
    """One row per labelled kernel of ncu's raw CSV (a path, or the text in a `io.StringIO`): its run, stage, group,
    order in its group, name, duration (us) and active warps (% of peak, of active and of elapsed cycles).

    Kernels outside every ``ios/...`` range (a 16-bit plan's conversions, anything else profiled) are left out.

    Raises
    ------
    NcuCsvError
        If a column needed is missing (the kernel name, ID, a metric) or the duration's unit is unknown.
    """
    text = source.getvalue() if isinstance(source, io.StringIO) else Path(source).read_text(errors="replace")
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("==")]  # ncu's own notes
    raw = pd.read_csv(io.StringIO("\n".join(lines)), dtype=str, keep_default_na=False)
    missing = [c for c in ("ID", "Kernel Name", *METRICS) if c not in raw.columns]
    if missing:
        raise NcuCsvError(f"not an ncu raw CSV of {', '.join(METRICS)}: no column {', '.join(missing)}")
    # the NVTX columns' names and cell layout vary across ncu versions; a label is looked for in any of them
    nvtx = [c for c in raw.columns if "range" in c.lower() or c.lower().startswith("nvtx")] or list(raw.columns)
    units, rows = raw.iloc[0], raw.iloc[1:]  # the second row holds each metric's unit
    to_us = _TO_US.get(units[DURATION].strip())
    if to_us is None:
        raise NcuCsvError(f"unknown duration unit {units[DURATION]!r}")
    found = []
    for _, row in rows.iterrows():
        match = next((m for m in (_LABEL.search(row[c]) for c in nvtx) if m), None)
        if match is None:
            continue
        run, stage, group = map(int, match.groups())
        found.append({"id": int(_number(row["ID"])), "run": run, "stage": stage, "group": group,
                      "kernel": row["Kernel Name"], "duration_us": _number(row[DURATION]) * to_us,
                      "warps_active_pct": _number(row[WARPS_ACTIVE]), "warps_elapsed_pct": _number(row[WARPS_ELAPSED])})
    if not found:
        return pd.DataFrame(columns=COLUMNS)
    df = pd.DataFrame(found).sort_values("id", kind="stable")
    df["order"] = df.groupby(["run", "stage", "group"]).cumcount()
    return df[COLUMNS].reset_index(drop=True)


def per_kernel(df: pd.DataFrame) -> pd.DataFrame:
    """Each kernel's median over the profiled runs (one row per stage, group and order), in schedule order.

    Raises
    ------
    NcuCsvError
        If the runs launched different kernels at one place (the program is deterministic, so ncu lost some).
    """
    key = ["stage", "group", "order"]
    names = df.groupby(key)["kernel"].nunique()
    if (names > 1).any():
        raise NcuCsvError(f"runs differ in the kernel at (stage, group, order) {names[names > 1].index[0]}")
    values = ["duration_us", "warps_active_pct", "warps_elapsed_pct"]
    how = {"kernel": "first", "run": "nunique", **dict.fromkeys(values, "median")}
    table = df.groupby(key, as_index=False).agg(how)
    return table.rename(columns={"run": "runs"}).sort_values(key, ignore_index=True)


def timeline(kernels: pd.DataFrame) -> pd.DataFrame:
    """``kernels`` (`per_kernel`'s columns) with ``start_us`` and ``end_us``: groups of a stage start together, a
    group's kernels run back to back, stages back to back (a stage ends with its longest group)."""
    table = kernels.sort_values(["stage", "group", "order"], ignore_index=True)
    in_group = table.groupby(["stage", "group"])["duration_us"].cumsum()
    stage_us = in_group.groupby(table["stage"]).max()  # each stage's length: its longest group's
    offsets = stage_us.cumsum() - stage_us
    start = table["stage"].map(offsets) + in_group - table["duration_us"]
    # rounded to a picosecond, so that one kernel's end and the next one's start are one edge in `occupancy`
    table["start_us"], table["end_us"] = start.round(6), (start + table["duration_us"]).round(6)
    return table


def occupancy(table: pd.DataFrame, column: str = "warps_elapsed_pct") -> tuple[np.ndarray, np.ndarray]:
    """The step function of ``column`` summed over the kernels running at each instant of `timeline`'s ``table``
    (capped at 100%): ``(edges, values)``, ``len(edges) == len(values) + 1``, for `matplotlib.axes.Axes.stairs`."""
    if table.empty:
        return np.zeros(1), np.zeros(0)
    edges = np.unique(np.r_[table["start_us"].to_numpy(), table["end_us"].to_numpy()])
    values = np.zeros(len(edges) - 1)
    for start, end, value in table[["start_us", "end_us", column]].itertuples(index=False):
        values[(edges[:-1] >= start) & (edges[1:] <= end)] += value
    return edges, np.minimum(values, 100.0)


def time_weighted_mean(edges: np.ndarray, values: np.ndarray) -> float:
    """The mean of a step function over its whole span (gaps count as zero)."""
    widths = np.diff(edges)
    return float(np.sum(widths * values) / np.sum(widths)) if widths.sum() > 0 else float("nan")


def fill(record: Record, kernels: pd.DataFrame) -> None:
    """Log `per_kernel`'s table into a ``warps`` record: the `SERIES`, the laid-out length (``timeline_us``) and the
    time-weighted mean of the active warps (``warps_mean_pct``)."""
    for series, column in SERIES.items():
        record.log_series(series, kernels[column].astype(float))
    edges, values = occupancy(timeline(kernels))
    record.log_metric("timeline_us", float(edges[-1]) if len(values) else 0.0)
    record.log_metric("warps_mean_pct", time_weighted_mean(edges, values))


def kernels_of(record: Record) -> pd.DataFrame:
    """`fill`'s per-kernel table back from a ``warps`` record (without the kernels' names)."""
    table = pd.DataFrame({column: record.values(series) for series, column in SERIES.items()})
    return table.astype({"stage": int, "group": int, "order": int})
