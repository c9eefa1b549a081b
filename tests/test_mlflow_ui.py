"""The MLflow UI serves what a search logged: ``mlflow server`` on a free loopback port, over a store filled by
demo searches and a measurement, asked through its REST API and looked at in a real browser (Debian's chromium,
driven headless by Selenium; that test skips where no chromium is installed).

The store and the server are shared by the module's tests: the server takes seconds to start. They are made
before the per-test fixtures of ``conftest.py`` run, so every path here is explicit, under the module's own
tmp folder, and the server runs there.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from ios_core import measure, optimize
from ios_core.config import compose
from ios_core.tracking import Record
from ios_core.tracking.store import DEFAULT_EXPERIMENT, EXPERIMENT_KIND, EXPERIMENT_KIND_TAG, filter_tags, open_store

OPTS = ("sequential", "greedy", "both")
START_DEADLINE_S = 90.0  # MLflow's import alone takes 10 s or more on 2 busy cores
PAGE_DEADLINE_S = 30.0
# Where the README sends a user: MLflow 3.17's UI opens in its GenAI mode unless told otherwise, whatever the
# experiment's kind; ``workflowType=machine_learning`` is its "Model training" switch.
RUNS_PAGE = "{url}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"
# Headless and offline: this machine's network is closed, and chromium's background connections are refused there.
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1600,900")


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> tuple[Path, str]:
    """A folder and its sqlite store, holding one demo search per opt in `OPTS` and a simulated measurement."""
    folder = tmp_path_factory.mktemp("mlflow-ui")
    uri = f"sqlite:///{folder}/mlflow.db"
    for opt in OPTS:
        optimize.run(compose("optimize", [f"opt={opt}", "progress=false", f"tracking.uri={uri}",
                                          f"output={folder}/schedules/demo_{opt}.json"]))
    measure.run(compose("measure", ["mode=simulated", f"schedule={folder}/schedules/demo_both.json",
                                    f"out={folder}/records/demo_both.json", f"tracking.uri={uri}"]))
    return folder, uri


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_healthy(url: str, server: subprocess.Popen, log: Path) -> None:
    """Return once ``url/health`` answers OK; fail with the server's log if it exits or the deadline passes."""
    deadline = time.monotonic() + START_DEADLINE_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"mlflow server exited with status {server.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:  # not listening yet
            pass
        time.sleep(0.5)
    pytest.fail(f"mlflow server did not answer /health within {START_DEADLINE_S:.0f} s:\n{log.read_text()}")


@pytest.fixture(scope="module")
def server(store) -> str:
    """The URL of ``mlflow server`` over `store`; the server's whole process group is ended afterwards."""
    folder, uri = store
    port, log = free_port(), folder / "server.log"
    # No telemetry (the network is closed) and no job runner: its worker processes serve GenAI jobs only, and
    # starting them takes longer than the server itself.
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri, "--host", "127.0.0.1",
             "--port", str(port), "--workers", "1"],
            cwd=folder, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(url, process, log)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)  # its workers too, not only the parent
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def call(url: str, path: str, body: dict | None = None) -> dict:
    """One request to the server's REST API: GET, or POST of ``body`` as JSON; the decoded answer."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{url}/api/2.0/mlflow/{path}", data=data,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.load(answer)


def search(url: str, experiment_id: str, filter_string: str = "") -> list[dict]:
    return call(url, "runs/search", {"experiment_ids": [experiment_id], "filter": filter_string})["runs"]


def experiment(url: str) -> dict:
    return call(url, f"experiments/get-by-name?experiment_name={DEFAULT_EXPERIMENT}")["experiment"]


def test_an_experiment_made_before_the_kind_tag_gets_it_and_a_kind_someone_chose_is_kept(tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path}/old.db"
    client = MlflowClient(uri)
    client.create_experiment("old")
    client.create_experiment("chosen", tags={EXPERIMENT_KIND_TAG: "genai_development"})
    for name, kind in (("old", EXPERIMENT_KIND), ("chosen", "genai_development"), ("new", EXPERIMENT_KIND)):
        open_store(uri, name)
        assert client.get_experiment_by_name(name).tags[EXPERIMENT_KIND_TAG] == kind


def test_a_baseline_is_filtered_by_its_framework_and_has_no_cost_kind():
    baseline = Record("baseline/torch_eager/demo/b1", "baseline", {"framework": "torch_eager", "model": "demo"})
    assert filter_tags(baseline) == {"schedule_type": "torch_eager"}
    measured = Record("measure/demo/b1/both", "measure", {"opt": "both", "cost": "measured", "r": "3"})
    assert filter_tags(measured) == {"cost_kind": "measured", "schedule_type": "both"}


@pytest.mark.slow
def test_the_server_lists_every_run_with_its_metrics_and_the_keys_users_filter_by(server):
    found = experiment(server)
    assert {t["key"]: t["value"] for t in found["tags"]}[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND
    assert found["experiment_id"] == "1"  # the README's runs-table address names experiment 1 of a new store
    runs = search(server, found["experiment_id"])
    assert sorted(r["info"]["run_name"] for r in runs) == sorted(
        [*(f"optimize/demo/b1/{opt}" for opt in OPTS), "measure/demo/b1/both"])
    for run in runs:
        assert run["info"]["status"] == "FINISHED"
        params = {p["key"]: p["value"] for p in run["data"]["params"]}
        tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
        metrics = {m["key"]: m["value"] for m in run["data"]["metrics"]}
        assert {k: params[k] for k in ("model", "batch", "precision", "device", "opt")} == {
            "model": "demo", "batch": "1", "precision": "fp32", "device": "h100", "opt": tags["schedule_type"]}
        assert {"r", "s"} <= params.keys()
        assert (tags["source"], tags["cost_kind"]) == ("simulated", "simulated")
        assert metrics["predicted_latency_ms"] > 0
    (measured,) = [r for r in runs if r["info"]["run_name"].startswith("measure/")]
    assert {m["key"] for m in measured["data"]["metrics"]} >= {"median_ms", "predicted_latency_ms"}
    both = search(server, found["experiment_id"], "params.model = 'demo' and tags.source = 'simulated' and "
                                                  "tags.schedule_type = 'both' and tags.cost_kind = 'simulated'")
    assert len(both) == 2  # the search and its measurement


@pytest.mark.slow
@pytest.mark.skipif(not (shutil.which("chromium") and shutil.which("chromedriver")),
                    reason="no chromium and chromedriver here: install Debian's chromium and chromium-driver (the "
                           "README's test command does so where it runs as root with apt)")
def test_the_runs_table_shows_in_a_real_browser(server, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    found = experiment(server)
    names = [r["info"]["run_name"] for r in search(server, found["experiment_id"])]
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    # The driver named, so that Selenium never looks for (or downloads) one of its own.
    browser = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    try:
        browser.get(RUNS_PAGE.format(url=server, experiment_id=found["experiment_id"]))
        WebDriverWait(browser, PAGE_DEADLINE_S).until(lambda b: all(name in b.page_source for name in names))
        assert browser.title.startswith("Runs"), browser.title  # the runs table, not the GenAI overview
        assert f"{len(names)} matching runs" in browser.find_element("tag name", "body").text
        screenshot = tmp_path / "mlflow_runs.png"
        assert browser.save_screenshot(str(screenshot))
    finally:
        browser.quit()
    assert screenshot.read_bytes().startswith(b"\x89PNG") and screenshot.stat().st_size > 10_000
