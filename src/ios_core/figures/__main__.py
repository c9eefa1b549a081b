"""``python -m ios_core.figures NAME --out PREFIX RECORD...``: draw one figure from record files."""

from __future__ import annotations

import argparse

from ios_core.errors import run_command
from ios_core.figures import FIGURES, make


def option(item: str) -> tuple[str, int]:
    """``KEY=INT`` as the figure option it sets."""
    key, _, value = item.partition("=")
    try:
        return key, int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{item!r} is not KEY=INT") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ios_core.figures", description=__doc__.splitlines()[0])
    parser.add_argument("name", choices=list(FIGURES), help="which experiment's figure")
    parser.add_argument("records", nargs="+", help="measurement record files (JSON)")
    parser.add_argument("--out", required=True, help="output prefix: writes PREFIX.png, .pdf and .csv")
    parser.add_argument("--record", default=None, help="also write a figure record (artifacts: the three files)")
    parser.add_argument("--set", action="append", default=[], type=option, metavar="KEY=INT",
                        help="a figure option, e.g. device_batch=1 for specialization")
    args = parser.parse_args(argv)
    for path in make(args.name, args.records, args.out, args.record, **dict(args.set)):
        print(path)
    return 0


if __name__ == "__main__":
    run_command(main)
