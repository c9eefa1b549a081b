"""``python -m ios_core.tracking ingest PATH...``: log record files into MLflow, keeping their timestamps.

Folders are searched for ``*.json`` records and schedules; other JSON files, and MLflow's own folders, are
passed over. Ingestion is idempotent: a record already in the store is skipped, so rerunning is always safe.
A record or schedule that cannot be read is named on stderr, one ``error:`` line each, and the command exits
2 once the rest is logged.
"""

from __future__ import annotations

import argparse
import json
import sys

from ios_core.errors import run_command
from ios_core.files import write_atomic
from ios_core.tracking.store import DEFAULT_EXPERIMENT, ingest, tracking_uri


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ios_core.tracking", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    cmd = commands.add_parser("ingest", help="log record files (or folders of them) into the MLflow store")
    cmd.add_argument("paths", nargs="+", help="record files or folders holding them")
    cmd.add_argument("--uri", default=None, help="tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)")
    cmd.add_argument("--experiment", default=DEFAULT_EXPERIMENT, help="MLflow experiment name")
    cmd.add_argument("--summary", default=None, help="also write what was done as JSON to this file")
    args = parser.parse_args(argv)

    report = ingest(args.paths, args.uri, args.experiment)
    print(f"{tracking_uri(args.uri)}: {report}")
    for why in report.unreadable.values():
        print(f"error: {why}", file=sys.stderr)
    if args.summary:
        summary = {"uri": tracking_uri(args.uri), "experiment": args.experiment, "logged": report.logged,
                   "replaced": report.replaced, "skipped": report.skipped, "unreadable": report.unreadable}
        write_atomic(args.summary, json.dumps(summary, indent=1) + "\n")
    return 2 if report.unreadable else 0


if __name__ == "__main__":
    run_command(main)
