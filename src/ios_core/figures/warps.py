"""Experiment 3 as the paper draws it: active warps over time, one panel per schedule, from ``warps`` records.

A ``warps`` record (``python -m ios_core.profiling.warps profile``) holds each kernel's duration and active warps as
Nsight Compute read them, every kernel alone; the panel lays them out as the schedule runs them
(`ios_core.profiling.ncu.timeline`) and steps through the warps of the kernels running at each instant.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure, SubFigure

from ios_core.figures.common import OPT_LABELS, footnote, save
from ios_core.profiling import ncu
from ios_core.tracking import Record

NOTE = ("active warps: Nsight Compute (--clock-control none) replays every kernel alone, so each kernel's duration "
        "and warps are its own in isolation; the timeline lays the kernels out per stream in schedule order (a "
        "stage's groups in parallel, stages back to back) and sums the warps of the groups running together "
        "(at most 100%).")
ORDER = list(OPT_LABELS)


def label(record: Record) -> str:
    opt = record.params.get("opt", "")
    return OPT_LABELS.get(opt, opt or "?")


def warps_panel(fig: Figure | SubFigure, records: list[Record]) -> tuple[list[str], pd.DataFrame]:
    """One axis per schedule with a profile (Sequential on top), sharing the time axis, in ``fig``: the summed
    active warps as a step plot, its time-weighted mean in the legend. Returns the footnote lines (what was not
    available, and how the timeline is made) and the laid-out kernels."""
    records = sorted(records, key=lambda r: ORDER.index(r.params.get("opt")) if r.params.get("opt") in ORDER else 99)
    shown = [r for r in records if r.available and r.values("kernel_duration_us")]
    reasons = dict.fromkeys(r.tags.get("reason") or "no kernels in this record" for r in records if r not in shown)
    notes = [f"active warps: not available ({reason})" for reason in reasons]
    if not shown:
        ax = fig.subplots()
        ax.set_axis_off()
        ax.text(0.5, 0.5, "\n".join(notes) or "active warps: not available (no profile)", ha="center", va="center",
                wrap=True, fontsize=9, color="0.3", transform=ax.transAxes)
        return notes, pd.DataFrame(columns=["schedule", "stage", "group", "order", "start_us", "end_us"])
    axes = np.atleast_1d(fig.subplots(len(shown), 1, sharex=True, sharey=True))
    tables, highest = [], 0.0
    for i, (ax, record) in enumerate(zip(axes, shown, strict=True)):
        table = ncu.timeline(ncu.kernels_of(record)).assign(schedule=label(record), model=record.params.get("model"))
        edges, values = ncu.occupancy(table)
        mean, highest = ncu.time_weighted_mean(edges, values), max(highest, float(values.max(initial=0.0)))
        ax.stairs(values, edges, fill=True, alpha=0.3, color=f"C{i}")  # the FLOP-rate panel's colours and order
        ax.stairs(values, edges, linewidth=1.0, color=f"C{i}",
                  label=f"{label(record)}: {edges[-1]:.0f} us, mean {mean:.1f}%, {len(table)} kernels")
        ax.set_ylabel("active warps (%)")
        ax.legend(fontsize=8, loc="upper right")
        tables.append(table)
    axes[0].set_ylim(0, min(100.0, max(10.0, 1.2 * highest)))  # shared: batch 1 keeps far below the peak
    axes[-1].set_xlabel("time since the first kernel starts (us), kernels laid out in schedule order")
    devices = ", ".join(sorted({r.params.get("device_name", "?") for r in shown}))
    fig.suptitle(f"Active warps over time (% of peak, {shown[0].params.get('metric', ncu.WARPS_ELAPSED)})\n"
                 f"measured on {devices} by Nsight Compute", fontsize=9)
    return [*notes, NOTE], pd.concat(tables, ignore_index=True)


def active_warps(records: list[Record], prefix: str | os.PathLike) -> list[Path]:
    """The active-warps panel alone, saved as ``prefix``.png, .pdf and .csv."""
    fig = Figure(figsize=(7.5, 4.8), layout="constrained")
    notes, data = warps_panel(fig, records)
    footnote(fig, notes)
    return save(fig, data, prefix)
