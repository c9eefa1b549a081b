"""One-time migration (deleted after it ran): every committed GPU results file of bench/ as record files.

Each campaign, cross-device and engine-against-PyTorch file is split (``ios_core.tracking.campaign``, its last
use) into the folder of records the README and figures read. A record already committed keeps its id, times and
every value; the migration only adds what it lacked (the critical-path bound, plan numbers, errors against
Sequential), and checks that the values both hold agree. A record new here is stamped with the time its results
file was committed, as a fresh checkout has lost the file's own time.

Usage: ``python bench/migrate_records.py`` from the repository's root.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from ios_core.tracking.campaign import records_of
from ios_core.tracking.record import Point, Record, read, write

H100, H200 = Path("results/h100/campaign"), Path("results/h200/campaign")
CALL1 = (H100 / "schedules_inception_squeezenet_call1.json", H100 / "stage_costs_inception_squeezenet_call1.jsonl")
# (results file, records folder, (schedules bundle, stage profile) or None, the models kept or None for all)
JOBS = [
    (H100 / "ios_inception_squeezenet_call1.json", "results/h100/ios_campaign", CALL1, {"inception_v3"}),
    # call1's SqueezeNet, measured again in call2 (a search bug fixed in between): kept apart.
    (H100 / "ios_inception_squeezenet_call1.json", "results/h100/ios_campaign_call1", CALL1, {"squeezenet"}),
    (H100 / "ios_squeezenet_call2.json", "results/h100/ios_campaign", None, None),
    (H100 / "ios_nasnet.json", "results/h100/ios_campaign", None, None),
    (H100 / "ios_randwire.json", "results/h100/ios_campaign", None, None),
    (H100 / "cross_device_inception_v3.json", "results/h100/ios_campaign", None, None),
    (H100 / "ios_inception_squeezenet_r3.json", "results/h100/ios_campaign_r3", None, None),
    (H200 / "ios_inception_squeezenet.json", "results/h200/ios_campaign", None, None),
    (H200 / "ios_nasnet.json", "results/h200/ios_campaign", None, None),
    (H200 / "ios_randwire.json", "results/h200/ios_campaign", None, None),
    (H200 / "cross_device_inception_v3.json", "results/h200/ios_campaign", None, None),
    (Path("results/engine_vs_torch_batches_h100.json"), "results/h100/engine_vs_torch", None, None),
    (Path("results/engine_vs_torch_h100.json"), "results/h100/engine_vs_torch_models", None, None),
    (Path("results/engine_vs_torch_h100_rerun.json"), "results/h100/engine_vs_torch_rerun", None, None),
    (Path("results/engine_vs_torch_pooling_h100.json"), "results/h100/engine_vs_torch_pooling", None, None),
    (Path("results/engine_depthwise_h100.json"), "results/h100/engine_depthwise", None, None),
    (Path("results/engine_modes_h100.json"), "results/h100/engine_modes", None, None),
]


def file_name(record: Record) -> str:
    return "_".join(record.name.split("/")[1:]).replace("+", "_") + ".json"


def committed_at(path: Path) -> int:
    """When ``path`` was first committed (s)."""
    out = subprocess.run(["git", "log", "--diff-filter=A", "--format=%ct", "--", str(path)], check=True,
                         capture_output=True, text=True).stdout.split()
    return int(out[-1])


def merged(old: Record, new: Record) -> Record:
    """``old`` with what ``new`` adds; the values both hold must agree."""
    assert old.name == new.name and old.kind == new.kind, (old.name, new.name)
    for key, value in new.params.items():
        assert old.params.setdefault(key, value) == value or key in ("schedule",), (old.name, key)
    for key, value in new.tags.items():
        old.tags.setdefault(key, value)
    for name, series in new.metrics.items():
        if name in old.metrics:
            assert old.values(name) == [p.value for p in series], (old.name, name)
        else:
            old.metrics[name] = [Point(p.value, p.step, old.end_time) for p in series]
    return old


def main() -> None:
    written, added = 0, 0
    for source, folder, timeline, models in JOBS:
        stamp = committed_at(source)
        os.utime(source, (stamp, stamp))
        schedules, profile = timeline or (None, None)
        for record in records_of(source, schedules, profile):
            if models is not None and record.params["model"] not in models:
                continue
            path = Path(folder) / file_name(record)
            if path.exists():
                record = merged(read(path), record)
            else:
                added += 1
            write(record, path)
            written += 1
    print(f"{written} records written, {added} of them new")


if __name__ == "__main__":
    main()
