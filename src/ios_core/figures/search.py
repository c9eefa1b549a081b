"""Figures about the search: specialization to batch and device (experiment 4) and pruning (5)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.ticker import FuncFormatter, LogLocator

from ios_core.figures.common import figure, footnote, grouped_bars, save, source_label


def _heatmap(ax, table: pd.DataFrame, xlabel: str, ylabel: str) -> None:
    """Latency per cell, coloured by its ratio to the best schedule for that column (1.0 = best)."""
    ratio = table / table.min(axis=0)
    top = float(np.nanmax(ratio.to_numpy(dtype=float))) if ratio.notna().to_numpy().any() else 1.0
    labels = table.map(lambda v: "n/a" if pd.isna(v) else f"{v:.3g}")
    sns.heatmap(ratio, ax=ax, annot=labels, fmt="", cmap="rocket_r", vmin=1.0, vmax=max(top, 1.01),
                cbar_kws={"label": "latency / best"}, linewidths=0.5, linecolor="white", mask=ratio.isna())
    for (i, j), value in np.ndenumerate(table.to_numpy()):
        if pd.isna(value):
            ax.text(j + 0.5, i + 0.5, "n/a", ha="center", va="center", fontsize=8, color="0.4")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)


def batch_panel(df: pd.DataFrame) -> tuple[str | None, pd.DataFrame, pd.DataFrame]:
    """Experiment 4's batch panel: the device most records ran on their own schedules (``home``), those
    records, and their latency by schedule batch (rows) and run batch (columns)."""
    same_device = df[df["schedule_device"] == df["device"]]
    home = same_device["device"].value_counts().sort_index(kind="stable").idxmax() if len(same_device) else None
    same_device = same_device[same_device["device"] == home]
    table = same_device.pivot_table(index="schedule_batch", columns="batch", values="latency_ms", dropna=False)
    return home, same_device, table


def specialization(df: pd.DataFrame, prefix: str | os.PathLike, device_batch: int | None = None) -> list[Path]:
    """Experiment 4: schedules optimized for one batch (device) run at every batch (device); latency in ms.

    The batch panel holds the records run on the device they were optimized for -- one device's, the one
    most records ran on, so two GPUs' latencies never share a cell -- and is left out when they span a
    single batch; the device panel holds those run at the batch they were optimized for, ``device_batch``
    (default: the smallest).
    """
    df = df[df["kind"] == "measure"].copy()
    device_batch = device_batch or int(df["batch"].min())
    home, same_device, by_batch = batch_panel(df)
    on_batch = df[(df["schedule_batch"] == device_batch) & (df["batch"] == device_batch)].copy()
    for column in ("schedule_device", "device"):
        on_batch[column] = on_batch[column].str.upper()
    by_device = on_batch.pivot_table(index="schedule_device", columns="device", values="latency_ms", dropna=False)
    batches = sorted(set(df["schedule_batch"].dropna()) | set(df["batch"].dropna()))
    by_batch = by_batch.reindex(index=[b for b in batches if b in set(same_device["schedule_batch"])],
                                columns=[b for b in batches if b in set(same_device["batch"])])
    devices = sorted(set(on_batch["schedule_device"]) | set(on_batch["device"]))
    by_device = by_device.reindex(index=devices, columns=devices)

    if by_batch.size > 1:
        fig, (left, right) = figure(10.5, 4.0, ncols=2, width_ratios=[1.6, 1.0])
        _heatmap(left, by_batch, "run at batch size", "schedule optimized for batch size")
        left.set_title(f"batch specialization, {', '.join(sorted(set(same_device['model'])))} on "
                       f"{str(home).upper()} (latency, ms)")
    else:
        fig, right = figure(5.5, 4.0)
    _heatmap(right, by_device, "run on device", "schedule optimized on device")
    right.set_title(f"device specialization, {', '.join(sorted(set(on_batch['model'])))}, batch {device_batch} "
                    "(latency, ms)")
    fig.suptitle(f"Specialized schedules\n{source_label(df)}")
    missing = df[~df["available"]]
    footnote(fig, [f"not available -- optimized on {r.schedule_device} for batch {r.schedule_batch}, run on "
                   f"{r.device} at batch {r.batch}: {r.reason}" for r in missing.itertuples()])
    data = df[["model", "schedule_batch", "batch", "schedule_device", "device", "latency_ms", "source",
               "device_name", "available", "reason"]]
    return save(fig, data, prefix)


def pruning(df: pd.DataFrame, prefix: str | os.PathLike) -> list[Path]:
    """Experiment 5: optimized latency and search cost for each pruning setting (r, s) per model."""
    df = df[df["kind"] == "measure"].copy()
    df["pruning"] = [f"r={r}, s={s}" for r, s in zip(df["r"], df["s"], strict=True)]
    settings = [f"r={r}, s={s}" for r, s in sorted(set(zip(df["r"], df["s"], strict=True)))]
    loosest = df.sort_values(["r", "s"]).groupby("model")["latency_ms"].last()
    df["relative_latency"] = df["latency_ms"] / df["model"].map(loosest)
    models = list(dict.fromkeys(df["model"]))
    fig, (top, middle, bottom) = figure(1.8 * len(models) + 4.0, 8.0, nrows=3, sharex=True)
    notes = grouped_bars(top, df, "model", "pruning", "relative_latency", (models, settings), label="{:.3g}")
    top.set_ylim(bottom=min(0.9, df["relative_latency"].min(skipna=True) * 0.98) if df["latency_ms"].notna().any()
                 else 0)
    top.set_ylabel(f"latency relative to {settings[-1]}")
    top.set_title("optimized schedule latency (lower is better)")
    for ax, column, label, fmt in ((middle, "search_time_s", "search time (s, wall clock)", "{:.2g} s"),
                                   (bottom, "stages_costed", "distinct stages costed", "{:.0f}")):
        grouped_bars(ax, df, "model", "pruning", column, (models, settings), label=fmt)
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
        ax.set_ylabel(label)
        ax.get_legend().remove()
    middle.set_title("search cost")
    bottom.set_xlabel("model")
    simulated = set(df["source"]) == {"simulated"}
    fig.suptitle(f"Schedule pruning P(r, s)\n{source_label(df)}"
                 f"{', search costed with the analytical model' if simulated else ''}")
    footnote(fig, notes)
    data = df[["model", "batch", "r", "s", "latency_ms", "relative_latency", "search_time_s", "states",
               "stages_costed", "source", "device_name", "available", "reason"]]
    return save(fig, data, prefix)
