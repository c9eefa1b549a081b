"""What every figure shares: records as a table, the data-source label, "not available" bars, saving.

Invariants: a figure plots the records it is given and nothing else; a record that could not be
measured here (``available=false``) is drawn as a labelled "n/a" placeholder with its reason in the
footnote, never dropped; simulated and measured numbers are never put in one figure (`source_label`
raises). Every figure is saved as PNG, PDF and the CSV of the numbers behind it.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import matplotlib
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from ios_core.errors import UserError
from ios_core.tracking import Record

OPT_LABELS = {"sequential": "Sequential", "greedy": "Greedy", "merge": "IOS-Merge", "parallel": "IOS-Parallel",
              "both": "IOS-Both"}
COLUMNS = ["name", "kind", "model", "batch", "device", "device_name", "opt", "r", "s", "framework", "variant",
           "schedule_batch", "schedule_device", "source", "available", "reason", "latency_ms", "repeats",
           "search_time_s", "states", "stages_costed", "predicted_latency_ms"]


class MixedSourcesError(UserError, ValueError):
    """Simulated and measured numbers were asked to share a figure."""


def _int(value: str | None) -> int | None:
    return int(value) if value not in (None, "") else None


def _device_name(record: Record) -> str | None:
    """The GPU a measurement ran on (a baseline keeps it in its ``device`` tag), or the simulated device."""
    p = record.params
    return p.get("device_name") or p.get("gpu_name") or record.tags.get("device") or p.get("device")


def frame(records: Iterable[Record]) -> pd.DataFrame:
    """One row per record with the columns figures select on (see `COLUMNS`)."""
    rows = []
    for r in records:
        p = r.params
        rows.append({
            "name": r.name, "kind": r.kind, "model": p.get("model"), "batch": _int(p.get("batch")),
            "device": p.get("device") or p.get("device_profile"), "device_name": _device_name(r),
            "opt": p.get("opt"), "r": _int(p.get("r")), "s": _int(p.get("s")), "framework": p.get("framework"),
            "variant": p.get("variant", ""), "schedule_batch": _int(p.get("schedule_batch")),
            "schedule_device": p.get("schedule_device"), "source": r.tags.get("source", "simulated"),
            "available": r.available, "reason": r.tags.get("reason", ""), "latency_ms": r.latest("median_ms"),
            "repeats": len(r.values("latency_ms")), "search_time_s": r.latest("search_time_s"),
            "states": r.latest("dp_states"), "stages_costed": r.latest("stages_costed"),
            "predicted_latency_ms": r.latest("predicted_latency_ms"),
        })
    df = pd.DataFrame(rows, columns=COLUMNS)
    numeric = ["latency_ms", "search_time_s", "states", "stages_costed", "predicted_latency_ms"]
    df[numeric] = df[numeric].apply(pd.to_numeric, errors="coerce").astype(float)  # None (n/a) becomes NaN
    return df


def ms(value: float) -> str:
    """A latency for a label: three significant digits, or n/a."""
    return "n/a" if pd.isna(value) else f"{value:.3g} ms"


def source_label(df: pd.DataFrame) -> str:
    """Where the numbers come from, for the title: "simulated H100 (analytical model)" or the GPU's name."""
    measured = df[df["available"]]
    sources = set(measured["source"])
    if len(sources) > 1:
        raise MixedSourcesError(f"simulated and measured records in one figure: {sorted(measured['name'])}")
    if not sources:
        return "no measurement available"
    devices = ", ".join(sorted(set(measured["device_name"].dropna())))
    return f"simulated {devices} (analytical model)" if sources == {"simulated"} else f"measured on {devices}"


@contextmanager
def themed() -> Iterator[None]:
    """Seaborn's theme for the figures drawn inside, restored afterwards (no global state changes)."""
    with matplotlib.rc_context():
        sns.set_theme(context="paper", style="whitegrid", palette="colorblind", font_scale=1.1)
        yield


def figure(width: float, height: float, **subplots) -> tuple[Figure, object]:
    """A figure drawn without pyplot (so without a GUI backend or pyplot's global figure list)."""
    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, fig.subplots(**subplots)


def grouped_bars(ax: Axes, df: pd.DataFrame, group: str, hue: str, value: str,
                 orders: tuple[Sequence[str], Sequence[str]], label: str | None = None) -> list[str]:
    """Bars of ``value`` per ``group`` (x) and ``hue`` (colour); rows with NaN become "n/a" markers.

    ``label`` (a format such as ``"{:.2g}"``) writes each bar's value above it. Returns the
    footnote lines that explain the unavailable bars, one per reason.
    """
    groups, hues = orders
    # colorblind has 10 colours and repeats them after that: more series take distinct hues instead
    colours = sns.color_palette("colorblind" if len(hues) <= 10 else "husl", len(hues))
    palette = dict(zip(hues, colours, strict=True))
    width = 0.8 / max(len(hues), 1)
    missing: dict[str, dict[str, list[str]]] = {}  # reason -> hue -> groups
    top = df[value].max() if df[value].notna().any() else 1.0
    for i, g in enumerate(groups):
        for j, h in enumerate(hues):
            x = i - 0.4 + width * (j + 0.5)
            row = df[(df[group] == g) & (df[hue] == h)]
            if not row.empty and pd.notna(row[value].iloc[0]):
                bar = ax.bar(x, row[value].iloc[0], width, color=palette[h], label=h if i == 0 else None)
                if label:
                    ax.bar_label(bar, [label.format(row[value].iloc[0])], fontsize=7, padding=1)
            else:
                reason = row["reason"].iloc[0] if not row.empty and row["reason"].iloc[0] else "not measured"
                ax.bar(x, top * 0.04, width, color="white", edgecolor="0.5", hatch="//", linewidth=0.5)
                ax.text(x, top * 0.06, "n/a", rotation=90, ha="center", va="bottom", fontsize=7, color="0.3")
                missing.setdefault(reason, {}).setdefault(h, []).append(g)
    ax.set_xticks(range(len(groups)), groups)
    handles = [Rectangle((0, 0), 1, 1, color=palette[h]) for h in hues]
    ax.legend(handles, hues, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return not_available_notes(missing, groups)


def not_available_notes(missing: dict[str, dict[str, list[str]]], groups: Sequence[str]) -> list[str]:
    """One footnote line per reason: which series lacked a number, and where (unless everywhere)."""
    lines = []
    for reason, hues in missing.items():
        where = [h if len(gs) == len(groups) else f"{h} ({', '.join(gs)})" for h, gs in hues.items()]
        lines.append(f"not available -- {', '.join(where)}: {reason}")
    return lines


def footnote(fig: Figure, lines: Sequence[str]) -> None:
    """Small print under the axes: what was not available and why."""
    if lines:
        # a reason may be a multi-line error message: each note is one paragraph
        wrapped = "\n".join(textwrap.fill(" ".join(line.split()), 130, subsequent_indent="    ") for line in lines)
        fig.text(0.0, -0.01, wrapped, fontsize=6.5, color="0.25", va="top", ha="left")  # saved with a tight box


def save(fig: Figure, data: pd.DataFrame, prefix: str | os.PathLike) -> list[Path]:
    """Write ``prefix``.png, .pdf and .csv (the numbers behind the figure); returns the paths."""
    prefix = Path(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    paths = [prefix.with_suffix(".png"), prefix.with_suffix(".pdf"), prefix.with_suffix(".csv")]
    fig.savefig(paths[0], dpi=150, bbox_inches="tight")
    fig.savefig(paths[1], bbox_inches="tight")
    data.to_csv(paths[2], index=False)
    return paths
