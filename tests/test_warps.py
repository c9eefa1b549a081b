"""Active warps per kernel (experiment 3 as the paper draws it): ncu's raw CSV parsed, the kernels laid out on the
schedule's timeline, the figure drawn, and the not-available record where there is no GPU or no ncu."""

from pathlib import Path

import pandas as pd
import pytest

from ios_core.figures.common import themed
from ios_core.figures.warps import active_warps, warps_panel
from ios_core.profiling import ncu
from ios_core.profiling.warps import labelled, main
from ios_core.tracking import Record, read, recording

SAMPLE = Path(__file__).parent / "ncu" / "warps_raw.csv"  # two runs of a 2-stage schedule, hand-written as ncu's
SIMULATED = "simulated cost model; needs ncu on a GPU"


def test_the_raw_csv_gives_one_row_per_labelled_kernel():
    df = ncu.read_csv(SAMPLE)
    assert len(df) == 8  # the unlabelled fill kernel is left out
    assert df[["run", "stage", "group", "order"]].drop_duplicates().shape[0] == 8
    first = df.iloc[0]
    assert (first["run"], first["stage"], first["group"], first["order"]) == (0, 0, 0, 0)
    assert first["kernel"].startswith("sm90_xmma_fprop")
    assert first["duration_us"] == pytest.approx(12.48)  # "12,480" ns
    assert first["warps_active_pct"] == pytest.approx(24.81) and first["warps_elapsed_pct"] == pytest.approx(3.10)
    assert df[(df["run"] == 0) & (df["stage"] == 0)]["kernel"].tolist()[1] == "pointwise_float32"


def test_a_csv_without_the_metrics_is_refused(tmp_path):
    path = tmp_path / "other.csv"
    path.write_text('"ID","Kernel Name","gpu__time_duration.sum"\n"","","ns"\n"0","k","1"\n')
    with pytest.raises(ncu.NcuCsvError, match="sm__warps_active"):
        ncu.read_csv(path)


def test_each_kernel_is_its_median_over_the_runs():
    kernels = ncu.per_kernel(ncu.read_csv(SAMPLE))
    assert len(kernels) == 4 and set(kernels["runs"]) == {2}
    assert kernels.iloc[0]["duration_us"] == pytest.approx((12.48 + 13.728) / 2)


def test_runs_launching_different_kernels_are_refused():
    df = ncu.read_csv(SAMPLE)
    df.loc[(df["run"] == 1) & (df["stage"] == 1) & (df["group"] == 1), "kernel"] = "other"
    with pytest.raises(ncu.NcuCsvError, match="runs differ"):
        ncu.per_kernel(df)


def kernels(rows):
    return pd.DataFrame([{"stage": s, "group": g, "order": o, "kernel": "k", "duration_us": d,
                          "warps_active_pct": w, "warps_elapsed_pct": w} for s, g, o, d, w in rows])


def test_groups_of_a_stage_overlap_and_stages_follow_each_other():
    table = ncu.timeline(kernels([(0, 0, 0, 2.0, 10.0), (0, 0, 1, 1.0, 20.0), (1, 0, 0, 4.0, 30.0),
                                  (1, 1, 0, 1.0, 50.0), (1, 1, 1, 2.0, 60.0), (2, 0, 0, 1.0, 5.0)]))
    spans = {(r.stage, r.group, r.order): (r.start_us, r.end_us) for r in table.itertuples()}
    assert spans[(0, 0, 1)] == (2.0, 3.0)  # a group's kernels back to back
    assert spans[(1, 0, 0)] == (3.0, 7.0) and spans[(1, 1, 0)] == (3.0, 4.0)  # a stage's groups start together
    assert spans[(1, 1, 1)] == (4.0, 6.0)
    assert spans[(2, 0, 0)] == (7.0, 8.0)  # the next stage after the stage's longest group
    edges, values = ncu.occupancy(table)
    assert edges.tolist() == [0.0, 2.0, 3.0, 4.0, 6.0, 7.0, 8.0]
    assert values.tolist() == [10.0, 20.0, 80.0, 90.0, 30.0, 5.0]  # concurrent groups' warps summed
    assert ncu.time_weighted_mean(edges, values) == pytest.approx((20 + 20 + 80 + 180 + 30 + 5) / 8)


def test_summed_warps_are_capped_at_the_peak():
    _, values = ncu.occupancy(ncu.timeline(kernels([(0, 0, 0, 1.0, 70.0), (0, 1, 0, 1.0, 70.0)])))
    assert values.tolist() == [100.0]


def test_the_target_labels_each_group_once_around_its_launches():
    events = []
    stages = ((tuple(lambda i=i: events.append(f"k{i}") for i in range(2)),), ((lambda: events.append("k2"),), ()))
    ranges = (lambda message: events.append(f"push {message}"), lambda: events.append("pop"))
    runs = labelled(stages, 1, ranges)
    assert [len(stage) for stage in runs] == [1, 2] and runs[1][1] == ()
    for stage in runs:
        for group in stage:
            for call in group:
                call()
    assert events == ["push ios/r1/s0/g0", "k0", "k1", "pop", "push ios/r1/s1/g0", "k2", "pop"]


def test_ncu_runs_with_the_clocks_left_alone_and_from_the_profiler_start():
    command = ncu.command("ncu", "r.ncu-rep", ["python3", "t.py"])
    assert command[command.index("--clock-control") + 1] == "none"
    assert command[command.index("--profile-from-start") + 1] == "off" and "--nvtx" in command
    assert command[-2:] == ["python3", "t.py"]


def warps_record(opt, path):
    params = {"model": "inception_v3", "batch": "1", "opt": opt, "device_name": "NVIDIA H200",
              "metric": ncu.WARPS_ELAPSED}
    with recording(f"warps/inception_v3/b1/{opt}", "warps", params, {"source": "measured"}, path) as record:
        ncu.fill(record, ncu.per_kernel(ncu.read_csv(SAMPLE)))
    return read(path)


def test_a_record_keeps_the_kernels_and_the_figure_draws_them(tmp_path):
    records = [warps_record(opt, tmp_path / f"{opt}.json") for opt in ("both", "sequential")]
    assert len(ncu.kernels_of(records[0])) == 4 and records[0].latest("warps_mean_pct") > 0
    with themed():
        paths = active_warps(records, tmp_path / "fig" / "warps")
    assert all(p.stat().st_size > 0 for p in paths)
    data = pd.read_csv(paths[2])
    assert data["schedule"].drop_duplicates().tolist() == ["Sequential", "IOS-Both"]  # Sequential on top
    assert data.groupby("schedule")["end_us"].max().to_dict() == pytest.approx(
        {"Sequential": records[0].latest("timeline_us"), "IOS-Both": records[0].latest("timeline_us")})


def test_utilization_draws_the_warps_beside_the_flop_rate(tmp_path):
    from ios_core.figures import make
    from ios_core.tracking import write

    measured = []
    for opt, stages in (("sequential", [0.1, 0.2]), ("both", [0.15])):
        record = Record(f"measure/inception_v3/{opt}", "measure",
                        {"model": "inception_v3", "batch": "1", "opt": opt, "device_name": "NVIDIA H200"},
                        {"source": "measured"}, status="FINISHED")
        record.log_series("stage_latency_ms", stages)
        record.log_series("stage_utilization_pct", [3.0] * len(stages))
        measured.append(write(record, tmp_path / f"m_{opt}.json"))
    warps = [tmp_path / f"{opt}.json" for opt in ("sequential", "both")]
    for opt, path in zip(("sequential", "both"), warps, strict=True):
        warps_record(opt, path)
    out = make("utilization", [*measured, *warps], tmp_path / "fig" / "utilization")
    data = pd.read_csv(out[2])
    assert set(data["panel"]) == {"flop_rate", "active_warps"}


def test_simulated_the_record_says_not_available_and_the_figure_says_why(tmp_path):
    out = tmp_path / "warps" / "both_r3_s8.json"
    assert main(["profile", "--schedule", "both_r3_s8", "--opt", "both", "--unavailable", SIMULATED,
                 "--out", str(out)]) == 0
    record = read(out)
    assert not record.available and record.tags["reason"] == SIMULATED and record.params["opt"] == "both"
    assert record.status == "FINISHED" and not record.metrics
    from matplotlib.figure import Figure

    notes, data = warps_panel(Figure(), [record])
    assert notes == [f"active warps: not available ({SIMULATED})"] and data.empty


def test_without_ncu_the_record_says_not_available(tmp_path):
    out = tmp_path / "sequential.json"
    main(["profile", "--schedule", "sequential", "--ncu", "no-such-ncu-here", "--out", str(out)])
    record = read(out)
    assert not record.available and "no-such-ncu-here" in record.tags["reason"]
    assert record.params["opt"] == "sequential"


def test_a_profile_runs_ncu_on_the_target_and_keeps_what_it_read(tmp_path, monkeypatch):
    """The whole ``profile`` command, with a stand-in ncu (it prints the sample CSV) and no GPU."""
    import ios_core.engine

    fake = tmp_path / "ncu"
    fake.write_text(f"""#!/bin/sh
case "$1" in
  --version) echo "NVIDIA (R) Nsight Compute Command Line Profiler"; echo "Version 2025.3.0.0 (build 1)";;
  --import) cat {SAMPLE};;
  *) while [ "$1" != "--export" ]; do shift; done; touch "$2";;
esac
""")
    fake.chmod(0o755)
    monkeypatch.setattr(ios_core.engine, "environment",
                        lambda: {"name": "NVIDIA H200", "driver": "580.159.04", "cudnn": "9.19.0"})
    out = tmp_path / "both.json"
    assert main(["profile", "--schedule", "sequential", "--ncu", str(fake), "--out", str(out)]) == 0
    record = read(out)
    assert record.available and record.params["ncu"] == "Version 2025.3.0.0 (build 1)"
    assert record.params["device_name"] == "NVIDIA H200" and record.params["clock_control"] == "none"
    assert len(ncu.kernels_of(record)) == 4 and record.latest("timeline_us") > 0
    assert [Path(p).name for p in record.artifacts] == ["both.ncu.csv", "both.kernels.csv"]
    assert "pointwise_float32" in pd.read_csv(tmp_path / "both.kernels.csv")["kernel"].tolist()
