"""``python -m ios_core.tracking ingest PATH...``: log record files into MLflow, keeping their timestamps.

Folders are searched for ``*.json`` records and schedules; other JSON files, and MLflow's own folders, are
passed over. Ingestion is idempotent: a record already in the store is skipped, so rerunning is always safe.
A record or schedule that cannot be read is named on stderr, one ``error:`` line each, and the command exits
2 once the rest is logged.
``python -m ios_core.tracking split CAMPAIGN --out DIR`` writes a GPU campaign's (or a cross-device or an
engine-against-PyTorch run's) measurements as record files (one per model and schedule) that figures read
and ``ingest`` logs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ios_core.errors import run_command
from ios_core.files import write_atomic
from ios_core.tracking.campaign import records_of
from ios_core.tracking.record import write
from ios_core.tracking.store import DEFAULT_EXPERIMENT, ingest, tracking_uri


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ios_core.tracking", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    cmd = commands.add_parser("ingest", help="log record files (or folders of them) into the MLflow store")
    cmd.add_argument("paths", nargs="+", help="record files or folders holding them")
    cmd.add_argument("--uri", default=None, help="tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)")
    cmd.add_argument("--experiment", default=DEFAULT_EXPERIMENT, help="MLflow experiment name")
    cmd.add_argument("--summary", default=None, help="also write what was done as JSON to this file")
    cmd = commands.add_parser("split", help="write a GPU results file's measurements as record files")
    cmd.add_argument("campaign", help="a results JSON of bench/ios_campaign.py, cross_device.py or engine_vs_torch.py")
    cmd.add_argument("--out", required=True, help="folder for the record files")
    cmd.add_argument("--schedules", default=None, help="its schedules bundle (with --profile: stage timelines)")
    cmd.add_argument("--profile", default=None, help="the campaign's stage profile (stage_costs.jsonl)")
    args = parser.parse_args(argv)

    if args.command == "split":
        for record in records_of(args.campaign, args.schedules, args.profile):
            print(write(record, Path(args.out) / f"{'_'.join(record.name.split('/')[1:])}.json"))
        return 0
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
