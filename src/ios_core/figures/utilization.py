"""Experiment 3: device utilization over time, Sequential against IOS-Both, one model: the FLOP rate stage by stage,
and beside it, where profiled, the active warps kernel by kernel (`ios_core.figures.warps`)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ios_core.figures.common import OPT_LABELS, figure, footnote, frame, save, source_label
from ios_core.figures.warps import warps_panel
from ios_core.tracking import Record

SERIES = "stage_utilization_pct"


def timeline(record: Record) -> pd.DataFrame:
    """One row per stage: when it starts and ends (ms, stages back to back) and its utilization."""
    latency, busy = record.values("stage_latency_ms"), record.values(SERIES)
    end = np.cumsum(latency)
    return pd.DataFrame({"stage": range(len(latency)), "start_ms": end - np.asarray(latency), "end_ms": end,
                         "latency_ms": latency, "utilization_pct": busy})


def utilization(records: list[Record], prefix: str | os.PathLike) -> list[Path]:
    """Stage-by-stage utilization of each schedule as a step plot over time, its mean in the legend; with ``warps``
    records (`ios_core.profiling.warps`) among ``records``, their active warps over time beside it
    (`ios_core.figures.warps.warps_panel`)."""
    warps = [r for r in records if r.kind == "warps"]
    if not warps:
        fig, ax = figure(7.5, 3.6)
        notes, data = flop_panel(ax, records)
        footnote(fig, notes)
        return save(fig, data, prefix)
    fig = Figure(figsize=(14.0, 4.8), layout="constrained")
    left, right = fig.subfigures(1, 2, width_ratios=[1.0, 1.0])
    notes, flops = flop_panel(left.subplots(), [r for r in records if r.kind != "warps"])
    more, kernels = warps_panel(right, warps)
    footnote(fig, notes + more)
    data = pd.concat([flops.assign(panel="flop_rate"), kernels.assign(panel="active_warps")], ignore_index=True)
    return save(fig, data, prefix)


def flop_panel(ax: Axes, records: list[Record]) -> tuple[list[str], pd.DataFrame]:
    """The FLOP-rate timeline of ``records`` (measure records) on ``ax``: the footnote lines and the stages drawn."""
    df = frame(records)
    notes, tables = [], []
    metric = "utilization (%)"
    for record in records:
        label = OPT_LABELS.get(record.params.get("opt", ""), record.params.get("opt", "?"))
        if not record.available or not record.values(SERIES):
            reason = record.tags.get("reason") or (
                "no per-stage latencies in this record (measured before measure timed each stage alone)")
            notes.append(f"not available -- {label}: {reason}")
            ax.plot([], [], linestyle="none", label=f"{label} (n/a)")
            continue
        metric = record.params.get("utilization_metric", metric)
        table = timeline(record).assign(schedule=label, model=record.params.get("model"))
        tables.append(table)
        mean = float(np.average(table["utilization_pct"], weights=table["latency_ms"]))
        ax.stairs(table["utilization_pct"], np.r_[0.0, table["end_ms"]], linewidth=1.4,
                  label=f"{label}: {table['end_ms'].iloc[-1]:.3g} ms, mean {mean:.1f}%")
    ax.set_xlabel("time since the first stage starts (ms)")
    ax.set_ylabel(metric)
    highest = max((float(t["utilization_pct"].max()) for t in tables), default=100.0)
    ax.set_ylim(0, min(100.0, max(5.0, 1.2 * highest)))  # batch 1 uses a few % of the peak: keep it readable
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    models = ", ".join(sorted(set(df["model"].dropna())))
    ax.set_title(f"Device utilization over time, {models}, batch {', '.join(map(str, sorted(set(df['batch']))))}"
                 f"\n{source_label(df)}")
    data = pd.concat(tables) if tables else pd.DataFrame(columns=["schedule", "stage", "start_ms", "end_ms"])
    return notes, data
