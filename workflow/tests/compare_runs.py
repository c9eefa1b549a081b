"""Compare two runs of the workflow (say, one through SLURM and one local): ``compare_runs.py <dir> <dir>``.

Each directory is a Snakemake working directory holding ``results/`` and the MLflow store ``mlflow.db``. The runs
agree when they wrote the same files, their records and figure CSVs hold the same numbers but for wall-clock
times, and their MLflow stores hold the same runs. Prints each difference and exits 1 if there is any.
"""

import csv
import json
import sqlite3
import sys
from pathlib import Path

RECORD_KEYS = ("name", "kind", "status")  # what a record says apart from its id, times, params, tags and metrics


def wall_clock(name):
    """Whether a metric, tag, CSV column or meta key is a wall-clock time (``search_time_s``, ``timestamp``)."""
    return name == "timestamp" or name.endswith(("time_s", "_seconds"))


def files(root):
    return {path.relative_to(root).as_posix() for path in (root / "results").rglob("*") if path.is_file()}


def csv_rows(path):
    with path.open(newline="") as stream:
        return [{k: v for k, v in row.items() if not wall_clock(k)} for row in csv.DictReader(stream)]


def record_content(path):
    """A record's name, status, params, tags and metric values, without its id and wall-clock times."""
    record = json.loads(path.read_text())
    kept = {key: {k: v for k, v in record.get(key, {}).items() if not wall_clock(k)} for key in ("params", "tags")}
    metrics = {k: m["values"] for k, m in record.get("metrics", {}).items() if not wall_clock(k)}
    return {**{k: record.get(k) for k in RECORD_KEYS}, **kept, "metrics": metrics}


def schedule_content(path):
    """A schedule's graph, stages and meta, without the meta's wall-clock times."""
    schedule = json.loads(path.read_text())
    return {**schedule, "meta": {k: v for k, v in schedule["meta"].items() if not wall_clock(k)}}


def mlflow_runs(root):
    """The (name, status) of every run in the directory's MLflow store, sorted."""
    with sqlite3.connect(root / "mlflow.db") as db:
        return sorted(db.execute("SELECT name, status FROM runs WHERE lifecycle_stage = 'active'").fetchall())


CONTENT = {"ios-core/record": record_content, "ios-core/schedule": schedule_content}  # JSON format -> what to compare


def differences(a, b):
    """Every way in which the runs in ``a`` and ``b`` differ, as one line each."""
    found = [
        f"only in {root}: {name}"
        for root, names in ((a, files(a) - files(b)), (b, files(b) - files(a)))
        for name in sorted(names)
    ]
    for name in sorted(files(a) & files(b)):
        if name.endswith(".csv"):
            same = csv_rows(a / name) == csv_rows(b / name)
        elif name.endswith(".json") and (kind := json.loads((a / name).read_text()).get("format")) in CONTENT:
            same = CONTENT[kind](a / name) == CONTENT[kind](b / name)
        else:  # logs, benchmarks, stage logs, mlflow.json: they hold times; PNG/PDF: drawn from the CSVs
            same = True
        if not same:
            found.append(f"differs: {name}")
    runs_a, runs_b = mlflow_runs(a), mlflow_runs(b)
    if runs_a != runs_b:
        found.append(f"MLflow runs differ: {len(runs_a)} in {a}, {len(runs_b)} in {b}")
    return found


def main(argv):
    a, b = (Path(arg) for arg in argv)
    found = differences(a, b)
    for line in found:
        print(line)
    if not found:
        print(f"same {len(files(a))} files, records, figure numbers and {len(mlflow_runs(a))} MLflow runs")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
