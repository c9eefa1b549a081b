"""``python -m ios_core.baselines``: the frameworks table as JSON -- each framework, available here or why not."""

import json

from ios_core.baselines.frameworks import frameworks_table
from ios_core.errors import run_command


def main() -> None:
    print(json.dumps(frameworks_table(), indent=1))


if __name__ == "__main__":
    run_command(main)
