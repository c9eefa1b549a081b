"""bench/op_profile.py on a CPU: our operators per kind from the simulated cost (a dry run), and PyTorch's kernel
names sorted into families."""

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def op_profile(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "bench"))  # a folder of scripts: it imports its siblings
    import op_profile

    return op_profile


def test_a_dry_run_sums_every_operator_into_its_kind(op_profile, tmp_path, capsys):
    out = tmp_path / "op.json"
    assert op_profile.main(["--dry-run", "--device", "h100", "--model", "inception_v3", "--batch", "16",
                            "--out", str(out)]) == 0
    document = json.loads(out.read_text())
    rows = {r["group"]: r for r in document["rows"]}
    assert {r["system"] for r in document["rows"]} == {"ours"} and document["environment"]["source"] == "simulated"
    assert {"Conv 1x1", "Conv 3x3", "Concat", "Pool max", "Pool avg"} <= set(rows)
    assert sum(r["count"] for r in rows.values()) == len(op_profile.network("inception_v3").graph.operators)
    assert sum(r["ms"] for r in rows.values()) == pytest.approx(document["ours"]["sequential_stage_sum_ms"])
    assert [r["ms"] for r in document["rows"]] == sorted((r["ms"] for r in document["rows"]), reverse=True)
    assert "| ours | Conv 1x1 |" in capsys.readouterr().out


def test_a_zoo_network_is_exported_on_the_spot_and_profiled_whole(op_profile, tmp_path):
    pytest.importorskip("torchvision")
    out = tmp_path / "op.json"
    assert op_profile.main(["--dry-run", "--device", "h100", "--zoo", "squeezenet1_1", "--out", str(out)]) == 0
    rows = {r["group"]: r for r in json.loads(out.read_text())["rows"]}
    assert {r["model"] for r in rows.values()} == {"squeezenet1_1"}
    assert sum(r["count"] for r in rows.values()) == 38  # the body and the classifier, as in results/h100/zoo.json
    assert {"Conv 1x1", "Conv 3x3", "Pool max", "Pool global_avg"} <= set(rows)


@pytest.mark.parametrize(("name", "family"), [
    ("sm90_xmma_fprop_implicit_gemm_tf32f32_tf32f32_f32_nhwckrsc_nhwc_tilesize128x128x32", "convolution"),
    ("cudnn::engines_precompiled::nchwToNhwcKernel<float, float, float, false, true>", "layout"),
    ("triton_poi_fused_convolution_relu_0", "triton"),
    ("triton_red_fused_mean_1", "triton"),
    ("sm90_xmma_gemm_f32f32_tf32f32_f32_tn_n_tilesize64x64x32", "matmul"),
    ("Memcpy DtoD (Device -> Device)", "copy"),
    ("void cutlass::Kernel<cutlass_tensorop_s1688conv2dfprop_optimized>", "convolution"),
    ("void at::native::unrolled_elementwise_kernel<convert_float_to_half>", "other"),
    ("void at::native::vectorized_elementwise_kernel<4, at::native::FillFunctor<float>>", "copy"),
    ("void at::native::(anonymous namespace)::max_pool_forward_nhwc<float, float>", "other"),
])
def test_kernel_names_fall_into_their_families(op_profile, name, family):
    assert op_profile.kernel_family(name) == family
