"""What every test shares: the helpers beside the tests, and a working directory and MLflow store of its own.

A test writes only under its own ``tmp_path``: it runs there, and MLflow (in-process, and in the commands it
starts, which inherit the environment) logs into ``tmp_path/mlflow.db`` -- the store a command run there
would open by default. The session then checks that the user's ``./mlflow.db``, ``./mlruns/`` and
``./schedules/`` are as they were.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ios_core.errors import DEBUG_VARIABLE

# Shared test helpers (random_graphs) live beside the tests, not in the package.
sys.path.insert(0, str(Path(__file__).parent))

GUARDED = ("mlflow.db", "mlruns", "schedules")  # what a command run in the user's folder writes by default


@pytest.fixture(autouse=True)
def own_folder_and_store(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def one_line_error(tmp_path):
    """Run ``python -m MODULE ARGS...`` in ``tmp_path`` as a user would and check that it failed as the error
    contract says (`ios_core.errors`): exit 2, no traceback, one ``error:`` line naming ``naming``; returns it."""

    def run(module: str, *args: str, naming: str) -> str:
        env = {key: value for key, value in os.environ.items() if key != DEBUG_VARIABLE}
        done = subprocess.run([sys.executable, "-m", module, *args], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=120)
        errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
        assert len(errors) == 1 and naming in errors[0], done.stderr
        return errors[0]

    return run


def snapshot(root: Path) -> dict[str, int]:
    """Every file and folder of `GUARDED` under ``root``, with its modification time (ns)."""
    found = {}
    for name in GUARDED:
        top = root / name
        for path in [top, *top.rglob("*")] if top.exists() else []:
            found[str(path.relative_to(root))] = path.stat().st_mtime_ns
    return found


@pytest.fixture(scope="session", autouse=True)
def the_users_folder_is_left_alone(request):
    root = request.config.invocation_params.dir
    before = snapshot(root)
    yield
    after = snapshot(root)
    touched = sorted(path for path in before.keys() | after.keys() if before.get(path) != after.get(path))
    if touched:
        pytest.fail(f"the tests wrote into {root}, not only their tmp_path: {', '.join(touched[:10])}", pytrace=False)
