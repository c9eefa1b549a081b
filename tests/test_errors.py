"""Every user error at every command is one line and exit status 2, run as a user runs it (a subprocess).

The contract (`ios_core.errors`): stderr holds exactly one line, ``error: ...``, naming what is wrong; no
traceback; exit status 2. Each case below is a bad input or a fault a user meets; the commands run concurrently
in one pool (each is mostly interpreter start-up), then each case checks its own outcome.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from onnx import TensorProto, helper, numpy_helper

from ios_core import models
from ios_core.schedule import sequential, to_json

QUIET = ("progress=false", "tracking.mlflow=false")


@dataclass(frozen=True)
class Case:
    """A command (``python -m <module> <args>``) that must fail with one line containing ``names``."""

    module: str
    args: tuple[str, ...]
    names: str


def schedule_json(mutate) -> str:
    """The demo graph's sequential schedule as JSON, changed by ``mutate(data)``."""
    data = json.loads(to_json(sequential(models.get("demo"))))
    mutate(data)
    return json.dumps(data)


def stages(data: dict, value) -> None:
    data["stages"] = value


def demo_stages(data: dict) -> list:
    return data["stages"]


def conv_onnx(weight_in: int, *, bias: int = 4, cycle: bool = False, dangling: bool = False) -> bytes:
    """A one-Conv ONNX model on a 3-channel input, its weight having ``weight_in`` input channels."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    import numpy as np

    w = numpy_helper.from_array(np.ones((4, weight_in, 3, 3), np.float32), "w")
    b = numpy_helper.from_array(np.ones((bias,), np.float32), "b")
    source = "ghost" if dangling else ("r2" if cycle else "x")
    nodes = [helper.make_node("Conv", [source, "w", "b"], ["c"], name="conv_a", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r2" if cycle else "y"], name="relu_a")]
    if cycle:
        nodes.append(helper.make_node("Relu", ["r2"], ["y"], name="relu_b"))
    graph = helper.make_graph(nodes, "g", [x], [y], [w, b])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


FILES = {
    "truncated.json": '{"format": "ios-core/schedule", "version": 1, "graph": "demo", "stag',
    "v2.json": schedule_json(lambda d: d.update(version=2)),
    "noversion.json": schedule_json(lambda d: d.pop("version")),
    "unknown_op.json": schedule_json(lambda d: demo_stages(d)[0][0]["ops"].append("conv99")),
    "omitted.json": schedule_json(lambda d: demo_stages(d).pop()),
    "duplicated.json": schedule_json(lambda d: demo_stages(d).append(demo_stages(d)[-1])),
    "order.json": schedule_json(lambda d: demo_stages(d).reverse()),
    "cross_group.json": schedule_json(lambda d: d.update(stages=[[{"ops": ["conv1"]}, {"ops": ["pool1"]}]]
                                                          + demo_stages(d)[2:])),
    "bad_merge.json": schedule_json(lambda d: d.update(stages=[[{"ops": ["conv1", "pool1"], "merge": True}]]
                                                        + demo_stages(d)[2:])),
    "merge_string.json": schedule_json(lambda d: demo_stages(d)[0][0].update(merge="false")),
    "stages_dict.json": schedule_json(lambda d: stages(d, {"0": []})),
    "latin1.json": b"\xff\xfe not utf-8",
    "not.onnx": "this is not an onnx model\n",
    "conv_5_on_3.onnx": conv_onnx(5),
    "bias.onnx": conv_onnx(3, bias=7),
    "cycle.onnx": conv_onnx(3, cycle=True),
    "dangling.onnx": conv_onnx(3, dangling=True),
    "table.json": "[1, 2, 3]\n",
    "corrupt.db": os.urandom(4096),
    "record.json": '{"format": "ios-core/record", "version": 1, "na',
    "a_file": "",
}
FILES["truncated.onnx"] = FILES["conv_5_on_3.onnx"][: len(FILES["conv_5_on_3.onnx"]) // 2]


def optimize(*args: str, names: str) -> Case:
    return Case("ios_core.optimize", (*QUIET, *args), names)


def measure(*args: str, names: str) -> Case:
    return Case("ios_core.measure", ("tracking.mlflow=false", "model=demo", "device=sim", *args), names)


CASES = {
    # optimize: config keys and values
    "misspelt key added with +": optimize("+bacth=4", names="bacth"),
    "unknown precision": optimize("precision=fp33", names="fp33"),
    "batch not a number": optimize("batch=abc", names="batch"),
    "batch zero": optimize("batch=0", names="batch"),
    "unknown model": optimize("model=bogus", names="bogus"),
    "unknown device": optimize("device=nope", names="nope"),
    "opt unknown": optimize("opt=fastest", names="fastest"),
    "r zero": optimize("r=0", names="r"),
    "unknown device key": optimize("+device.lanch_us=3", names="device.lanch_us"),
    "negative device number": optimize("device.launch_us=-1", names="launch_us"),
    "unknown model keyword": optimize("model=randwire", "+model.kwargs.bogus=1", names="bogus"),
    "model keyword of the wrong type": optimize("model=randwire", "+model.kwargs.seed=abc", names="seed"),
    # optimize: paths
    "output is a directory": optimize("output=outdir", names="outdir"),
    "output under a file": optimize("output=a_file/s.json", names="a_file"),
    "output empty": optimize("output=", names="''"),
    "output unwritable": optimize("output=/proc/ios/s.json", names="/proc/ios/s.json"),
    "cache is a directory": optimize("cost.cache=outdir", names="outdir"),
    "cost=table without a table": optimize("cost=table", names="cost.table"),
    "malformed cost table": optimize("cost=table", "cost.table=table.json", names="table.json"),
    "measured cost without a GPU": optimize("cost=measured", names="GPU"),
    # ONNX files
    "missing onnx file": optimize("model=onnx", "model.path=missing.onnx", names="missing.onnx"),
    "not an onnx file": optimize("model=onnx", "model.path=not.onnx", names="not.onnx"),
    "truncated onnx file": optimize("model=onnx", "model.path=truncated.onnx", names="truncated.onnx"),
    "conv weight of 5 channels on 3": optimize("model=onnx", "model.path=conv_5_on_3.onnx", names="conv_a"),
    "conv bias of the wrong length": optimize("model=onnx", "model.path=bias.onnx", names="conv_a"),
    "onnx cycle": optimize("model=onnx", "model.path=cycle.onnx", names="cycle"),
    "onnx undefined input": optimize("model=onnx", "model.path=dangling.onnx", names="ghost"),
    # tracking from a command
    "unknown tracking scheme": Case("ios_core.optimize", ("progress=false", "tracking.uri=bogus://x"), "bogus://x"),
    "corrupt sqlite store": Case("ios_core.optimize", ("progress=false", "tracking.uri=sqlite:///corrupt.db"),
                                 "corrupt.db"),
    "unreachable tracking server": Case("ios_core.optimize", ("progress=false", "tracking.uri=http://127.0.0.1:9"),
                                        "http://127.0.0.1:9"),
    # measure: every way a schedule file can be wrong
    "schedule missing": measure("schedule=missing.json", names="missing.json"),
    "schedule truncated": measure("schedule=truncated.json", names="truncated.json"),
    "schedule version 2": measure("schedule=v2.json", names="v2.json"),
    "schedule without version": measure("schedule=noversion.json", names="noversion.json"),
    "schedule unknown operator": measure("schedule=unknown_op.json", names="conv99"),
    "schedule operator omitted": measure("schedule=omitted.json", names="omitted.json"),
    "schedule operator twice": measure("schedule=duplicated.json", names="duplicated.json"),
    "schedule dependency broken": measure("schedule=order.json", names="order.json"),
    "schedule groups dependent": measure("schedule=cross_group.json", names="pool1"),
    "schedule illegal merge": measure("schedule=bad_merge.json", names="bad_merge.json"),
    "schedule merge as a string": measure("schedule=merge_string.json", names="merge"),
    "schedule stages not a list": measure("schedule=stages_dict.json", names="stages"),
    "schedule not UTF-8": measure("schedule=latin1.json", names="latin1.json"),
    "schedule not given": measure(names="schedule"),
    "the README's measure example on a fresh checkout": Case(
        "ios_core.measure", ("model=inception_v3", "mode=simulated", "tracking.mlflow=false",
                             "schedule=schedules/inception_v3_b1_both_h100_fp32_simulated.json"),
        "inception_v3_b1_both_h100_fp32_simulated.json"),
    "measure batch zero": measure("batch=0", "schedule=missing.json", names="batch"),
    "measure misspelt key": measure("+shedule=x.json", names="shedule"),
    "engine on a simulated device": measure("mode=engine", "schedule=missing.json", names="simulated"),
    # baseline
    "unknown framework": Case("ios_core.baseline", ("framework=bogus", "model=demo", "tracking.mlflow=false"),
                              "bogus"),
    "baseline batch zero": Case("ios_core.baseline", ("framework=onnxruntime_cpu", "model=demo", "batch=0",
                                                      "tracking.mlflow=false"), "batch"),
    "baseline misspelt key": Case("ios_core.baseline", ("+framwork=x", "tracking.mlflow=false"), "framwork"),
    # tracking and figures
    "ingest a missing path": Case("ios_core.tracking", ("ingest", "nowhere"), "nowhere"),
    "figure of a missing record": Case("ios_core.figures", ("schedules", "missing.json", "--out", "fig"),
                                       "missing.json"),
    "figure option it does not take": Case("ios_core.figures", ("specialization", "record.json", "--out", "fig",
                                                                "--set", "bogus=1"), "bogus"),
    "figure of a torn record": Case("ios_core.figures", ("schedules", "record.json", "--out", "fig"), "record.json"),
}


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory) -> dict[str, subprocess.CompletedProcess]:
    """Every case run once, from a folder holding the files they name, several at a time."""
    folder = tmp_path_factory.mktemp("user")
    for name, content in FILES.items():
        (folder / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    (folder / "outdir").mkdir()
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlflow.db'}"}
    env.pop("IOS_CORE_DEBUG", None)

    def run(case: Case) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", case.module, *case.args], cwd=folder, env=env,
                              capture_output=True, text=True, timeout=120)

    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(zip(CASES, pool.map(run, CASES.values()), strict=True))


def test_the_table_covers_at_least_forty_cases():
    assert len(CASES) >= 40


@pytest.mark.parametrize("name", list(CASES))
def test_a_user_error_is_one_line_and_exit_status_2(name, outcomes):
    case, done = CASES[name], outcomes[name]
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert case.names in lines[0], lines[0]


def test_a_bug_keeps_its_traceback(tmp_path):
    script = ("import sys\nimport ios_core.optimize as o\n"
              "o.search_end_to_end = lambda *args, **kwargs: 1 / 0  # a bug of ours, not the user's\n"
              "sys.argv = ['optimize', 'progress=false', 'tracking.mlflow=false']\n"
              "from ios_core.errors import run_command\nrun_command(o.main)\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "Traceback" in done.stderr and "ZeroDivisionError" in done.stderr


def test_debug_shows_the_traceback_of_a_user_error(tmp_path):
    done = subprocess.run([sys.executable, "-m", "ios_core.optimize", *QUIET, "batch=0"], cwd=tmp_path,
                          env={**os.environ, "IOS_CORE_DEBUG": "1"}, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "Traceback" in done.stderr and "batch must be >= 1" in done.stderr


def test_a_schedule_written_keeps_the_umask_mode_and_leaves_no_temporary_file(tmp_path):
    out = tmp_path / "s.json"
    done = subprocess.run([sys.executable, "-m", "ios_core.optimize", *QUIET, f"output={out}"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert oct(out.stat().st_mode & 0o777) == oct(0o666 & ~current_umask())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.json"]


def current_umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def test_a_failed_atomic_write_removes_its_temporary_file(tmp_path, monkeypatch):
    from ios_core import files
    from ios_core.errors import UserError

    def full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "fsync", full)
    with pytest.raises(UserError, match="No space left on device"):
        files.write_atomic(tmp_path / "x.json", "{}")
    assert list(tmp_path.iterdir()) == []


def test_an_onnx_model_of_the_table_is_refused_by_onnx_runtime_too(tmp_path):
    # The channel-mismatch case is a real user mistake, not one we made up: ONNX Runtime refuses to run it as well.
    import numpy as np

    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(FILES["conv_5_on_3.onnx"], providers=["CPUExecutionProvider"])
    with pytest.raises(Exception, match="channels"):  # noqa: B017 -- ORT's error types are not part of its API
        session.run(None, {"x": np.zeros((1, 3, 8, 8), np.float32)})


def test_no_case_left_debris_beside_its_files(outcomes, tmp_path_factory):
    folder = next(Path(tmp_path_factory.getbasetemp()).glob("user*"))
    assert not [p.name for p in folder.rglob(".*") if p.is_file()]


def test_one_line_keeps_what_failed_and_drops_pytorchs_logging_advice():
    from ios_core.errors import one_line

    error = RuntimeError("backend='hidet' raised:\nRecursionError: maximum recursion depth exceeded\n\n"
                         "Set TORCHDYNAMO_VERBOSE=1 for the internal stack trace (please do this especially if "
                         "you're reporting a bug to PyTorch).")
    assert one_line(error) == "backend='hidet' raised: RecursionError: maximum recursion depth exceeded"
