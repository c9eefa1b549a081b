"""Latency figures: schedules (experiment 1), frameworks (2), batch sizes (6), intra + inter (7)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ios_core.baselines.frameworks import ALIASES
from ios_core.figures.common import (
    COLUMNS,
    OPT_LABELS,
    figure,
    footnote,
    grouped_bars,
    ms,
    not_available_notes,
    save,
    source_label,
)

FRAMEWORK_LABELS = {
    "torch_eager": "PyTorch (eager)", "torch_cudagraph": "PyTorch + CUDA graph", "torch_compile": "torch.compile",
    "torch_compile_freeze": "torch.compile (frozen)", "torch_compile_max_autotune": "torch.compile (max-autotune)",
    "tensorrt": "TensorRT", "tvm_cudnn": "TVM-cuDNN", "taso": "TASO", "tensorflow": "TensorFlow",
    "tensorflow_xla": "TensorFlow (XLA)", "onnxruntime_cuda": "ONNX Runtime (CUDA)",
    "onnxruntime_cpu": "ONNX Runtime (CPU)", "xla": "XLA (JAX)", "hidet": "hidet",
}
FRAMEWORK_LABELS |= {alias: FRAMEWORK_LABELS[name] for alias, name in ALIASES.items()}
IOS = "IOS (ours)"


def _ordered(values: pd.Series) -> list:
    return list(dict.fromkeys(values.dropna()))


def _ios_limits(df: pd.DataFrame, model: str) -> str:
    """The pruning the model's IOS schedules were searched with, e.g. "IOS r=3, s=8"."""
    rows = df[(df["model"] == model) & df["opt"].isin(["merge", "parallel", "both"]) & df["r"].notna()]
    limits = sorted({(int(r), int(s)) for r, s in zip(rows["r"], rows["s"], strict=True)})
    return "; ".join(f"IOS r={r}, s={s}" for r, s in limits)


def _normalized_bars(ax, df: pd.DataFrame, hue: str, column: str, orders: tuple[list, list], base: str) -> list[str]:
    """Bars of ``column`` (throughput relative to ``base``) per model; if ``base`` itself is not available for
    a model, absolute latencies instead, so that what was measured is still shown."""
    normalizable = df.loc[df["model"].isin(orders[0]), column].notna().any() and not (
        df["latency_ms"].notna() & df[column].isna()).any()
    if normalizable or df["latency_ms"].isna().all():
        notes = grouped_bars(ax, df, "model", hue, column, orders)
        ax.axhline(1.0, color="0.4", linewidth=0.8, linestyle="--")
        ax.set_ylabel(f"throughput normalized to {base} (x)")
    else:
        notes = grouped_bars(ax, df, "model", hue, "latency_ms", orders, label="{:.3g}")
        ax.set_ylabel(f"latency (ms, lower is better)\n{base} n/a: not normalized")
    return notes


def _one_batch(df: pd.DataFrame) -> str:
    batches = sorted(set(df["batch"].dropna()))
    return f"batch {', '.join(map(str, batches))}"


def schedules(df: pd.DataFrame, prefix: str | os.PathLike) -> list[Path]:
    """Experiment 1: Sequential, Greedy and the IOS variants per model, as throughput over Sequential."""
    df = df[df["kind"] == "measure"].copy()
    df["schedule"] = df["opt"].map(OPT_LABELS)
    sequential = df[df["opt"] == "sequential"].groupby("model")["latency_ms"].first()
    df["speedup"] = df["model"].map(sequential) / df["latency_ms"]
    models = _ordered(df["model"])
    hues = [label for opt, label in OPT_LABELS.items() if opt in set(df["opt"])]
    fig, ax = figure(1.6 * len(models) + 2.5, 3.6)
    notes = _normalized_bars(ax, df, "schedule", "speedup", (models, hues), "Sequential")
    ax.set_xticks(range(len(models)), [f"{m}\nSequential {ms(sequential.get(m, np.nan))}\n{_ios_limits(df, m)}"
                                       for m in models])
    ax.set_xlabel("model")
    ax.set_title(f"Schedules compared, {_one_batch(df)}\n{source_label(df)}")
    footnote(fig, notes)
    return save(fig, df[["model", "batch", "schedule", "opt", "r", "s", "latency_ms", "speedup", "source",
                         "device_name", "available", "reason"]], prefix)


def frameworks(df: pd.DataFrame, prefix: str | os.PathLike) -> list[Path]:
    """Experiment 2: IOS against every framework baseline asked for; missing ones stay, marked n/a."""
    df = df.copy()
    df["system"] = np.where(df["kind"] == "baseline", df["framework"].map(FRAMEWORK_LABELS).fillna(df["framework"]),
                            IOS)
    ios = df[df["system"] == IOS].groupby("model")["latency_ms"].first()
    df["relative"] = df["model"].map(ios) / df["latency_ms"]
    models = _ordered(df["model"])
    systems = [IOS] + [FRAMEWORK_LABELS.get(f, f) for f in _ordered(df[df["kind"] == "baseline"]["framework"])]
    # a framework with no number anywhere gets a footnote, not an empty slot in every group
    nowhere = [s for s in systems[1:] if df.loc[df["system"] == s, "latency_ms"].isna().all()]
    shown = df[~df["system"].isin(nowhere)]
    fig, ax = figure(1.9 * len(models) + 3.0, 3.6)
    notes = _normalized_bars(ax, shown, "system", "relative", (models, [s for s in systems if s not in nowhere]),
                             "IOS")
    missing: dict[str, dict[str, list[str]]] = {}
    for row in df[df["system"].isin(nowhere)].itertuples():
        missing.setdefault(row.reason or "not measured", {}).setdefault(row.system, []).append(row.model)
    notes += not_available_notes(missing, models)
    ax.set_xticks(range(len(models)), [f"{m}\nIOS {ms(ios.get(m, np.nan))}\n{_ios_limits(df, m)}" for m in models])
    ax.set_xlabel("model")
    ax.set_title(f"IOS against framework baselines, {_one_batch(df)}\n{source_label(df)}")
    footnote(fig, notes)
    return save(fig, df[["model", "batch", "system", "framework", "latency_ms", "relative", "source", "device_name",
                         "available", "reason"]], prefix)


def frameworks_of_rows(rows: Iterable[Mapping[str, Any]], prefix: str | os.PathLike, device_name: str) -> list[Path]:
    """Experiment 2 from the rows of ``bench/frameworks.py`` (``{model, batch, framework, ms, available, reason,
    source, ...}``, framework ``ios_both`` for our engine): one group of bars per model and batch, measured on
    ``device_name``."""
    frame = []
    for row in rows:
        ios = row["framework"] == "ios_both"
        # an output above the tolerance is no result: the table stars it, the figure draws no bar for it
        reason = row.get("error") or row.get("reason") or ("" if row["ms"] is not None else "no number")
        ms = None if row.get("error") else row["ms"]
        frame.append({"name": f"{row['framework']}/{row['model']}/b{row['batch']}", "kind": "measure" if ios
                      else "baseline", "model": f"{row['model']} b{row['batch']}", "batch": row["batch"],
                      "opt": "both" if ios else None, "framework": None if ios else row["framework"],
                      "device_name": device_name, "source": row["source"], "available": ms is not None,
                      "reason": reason, "latency_ms": ms})
    df = pd.DataFrame(frame, columns=COLUMNS)
    df["latency_ms"] = pd.to_numeric(df["latency_ms"], errors="coerce").astype(float)
    return frameworks(df, prefix)


def batch_sizes(df: pd.DataFrame, prefix: str | os.PathLike) -> list[Path]:
    """Experiment 6: throughput (images/s) against batch size for Sequential, the baselines and IOS."""
    df = df.copy()
    df["system"] = np.where(df["kind"] == "baseline", df["framework"].map(FRAMEWORK_LABELS).fillna(df["framework"]),
                            df["opt"].map(OPT_LABELS).fillna(df["opt"]).replace({"IOS-Both": IOS}))
    df["throughput"] = df["batch"] / (df["latency_ms"] / 1000.0)
    fig, ax = figure(6.8, 3.8)
    batches = sorted(set(df["batch"].dropna()))
    missing: dict[str, dict[str, list[str]]] = {}
    for system in _ordered(df["system"]):
        rows = df[df["system"] == system].sort_values("batch")
        available = rows[rows["throughput"].notna()]
        for row in rows[rows["throughput"].isna()].itertuples():
            missing.setdefault(row.reason or "not measured", {}).setdefault(system, []).append(f"batch {row.batch}")
        if available.empty:
            ax.plot([], [], linestyle="none", label=f"{system} (n/a)")
        else:
            ax.plot(available["batch"], available["throughput"], marker="o", label=system)
    ax.set_xscale("log", base=2)
    ax.set_xticks(batches, [str(b) for b in batches])
    ax.set_xlabel("batch size")
    ax.set_ylabel("throughput (images/s)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    model = df["model"].iloc[0]
    ax.set_title(f"Throughput against batch size, {model}, {_ios_limits(df, model)}\n{source_label(df)}")
    footnote(fig, not_available_notes(missing, [f"batch {b}" for b in batches]))
    return save(fig, df[["model", "batch", "system", "latency_ms", "throughput", "source", "device_name",
                         "available", "reason"]], prefix)


INTRA_INTER = {
    ("sequential", ""): "Sequential",
    ("sequential", "autotune"): "Sequential + cuDNN autotuning (intra)",
    ("both", ""): "IOS-Both (inter)",
    ("both", "autotune"): "IOS-Both + cuDNN autotuning (intra + inter)",
}


def intra_inter(df: pd.DataFrame, prefix: str | os.PathLike) -> list[Path]:
    """Experiment 7: cuDNN engine autotuning per convolution, IOS, both and neither."""
    df = df.copy()
    df["system"] = [INTRA_INTER.get((o, v or ""), f"{o} {v}") for o, v in zip(df["opt"], df["variant"], strict=True)]
    base = df[df["system"] == "Sequential"].groupby("model")["latency_ms"].first()
    df["speedup"] = df["model"].map(base) / df["latency_ms"]
    models = _ordered(df["model"])
    systems = [s for s in INTRA_INTER.values() if s in set(df["system"])]
    fig, ax = figure(1.8 * len(models) + 4.0, 3.6)
    notes = _normalized_bars(ax, df, "system", "speedup", (models, systems), "Sequential")
    ax.set_xlabel("model")
    ax.set_title(f"Intra- and inter-operator parallelism, {_one_batch(df)}\n{source_label(df)}")
    footnote(fig, notes)
    return save(fig, df[["model", "batch", "system", "opt", "variant", "latency_ms", "speedup", "source",
                         "device_name", "available", "reason"]], prefix)
