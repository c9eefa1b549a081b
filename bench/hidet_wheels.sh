#!/bin/sh
# hidet 0.6.1 and exactly what the lent GPU machine lacks of its dependencies, as wheels in .hidet-wheels/ (git-ignored),
# for bench/frameworks.py there (no network). Run here, where PyPI answers; then carry .hidet-wheels (alone: below).
#
# hidet 0.6.1 requires numpy, psutil, tabulate, tqdm, nvtx, click, packaging, requests, filelock, cuda-python,
# hip-python-fork, lark, tomlkit, scipy, gitpython, importlib_metadata, torch and networkx. The machine's image has
# numpy, psutil, tabulate, tqdm, click, packaging, requests, filelock, scipy, networkx, torch 2.11 and cuda-bindings
# (hidet imports ``cuda.bindings``, which cuda-bindings is: the cuda-python metapackage adds nothing it imports and is
# left out, so that nothing replaces the image's cuda-bindings); gitpython and importlib_metadata come in .gpu-wheels.
# Left: lark, tomlkit and hip-python-fork. nvtx is left out too: hidet 0.6.1 never imports it.
#
# hip-python-fork (AMD's HIP bindings; 67 MB) is imported by ``import hidet`` -- ``from hip import hip`` -- but never
# called on an NVIDIA GPU (hidet asks ``ctypes.util.find_library('amdhip64')`` first). Its own ``hip/__init__.py``
# imports each submodule in a ``try`` ("may have been excluded from build"), so it is repacked here with ``hip.hip``
# and what that imports alone (``chip``, ``_hip_helpers``, ``_util``): 16 MB instead of 67.
#
# The working tree that travels holds 64 MiB: the checkout (20 MB), .gpu-wheels (33 MB, MLflow's server included) and
# these 18 MB do not fit together. So the wheels bench/frameworks.py needs of .gpu-wheels (staged first with
# ../shared/gpu/stage-wheels) are copied in too -- the engine's (pycuda and what it needs, the cuDNN frontend), Hydra's
# (ios_core.config), onnxslim (ios_core.onnx_io), gitpython (hidet) -- and .hidet-wheels (32 MB) travels alone.
#
# Usage: sh bench/hidet_wheels.sh            (writes .hidet-wheels/)
set -eu
top=$(git rev-parse --show-toplevel)
out="$top/.hidet-wheels"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rm -rf "$out"
mkdir -p "$out"
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$work" hidet==0.6.1 lark==1.3.1 tomlkit==0.15.3 hip-python-fork==6.3.3.540.31.1
mv "$work"/hidet-*.whl "$work"/lark-*.whl "$work"/tomlkit-*.whl "$out/"
python3 - "$work"/hip_python_fork-*.whl "$out" <<'EOF'
"""Repack the hip-python-fork wheel with hip.hip alone (and the dist-info, its RECORD written again)."""
import base64
import hashlib
import sys
import zipfile
from pathlib import Path

source, out = Path(sys.argv[1]), Path(sys.argv[2])
keep = ("hip/__init__.py", "hip/_version.py", "hip/_util/", "hip/hip.cpython", "hip/chip.cpython",
        "hip/_hip_helpers.cpython")
with zipfile.ZipFile(source) as wheel, zipfile.ZipFile(out / source.name, "w", zipfile.ZIP_DEFLATED) as slim:
    record_name = next(n for n in wheel.namelist() if n.endswith(".dist-info/RECORD"))
    lines = []
    for name in wheel.namelist():
        if name == record_name or not (name.startswith(keep) or ".dist-info/" in name):
            continue
        data = wheel.read(name)
        slim.writestr(wheel.getinfo(name), data, compress_type=zipfile.ZIP_DEFLATED, compresslevel=9)
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        lines.append(f"{name},sha256={digest},{len(data)}")
    slim.writestr(record_name, "\n".join([*lines, f"{record_name},,"]) + "\n")
EOF
for name in pycuda pytools platformdirs mako siphash24 nvidia_cudnn_frontend hydra_core omegaconf \
        antlr4_python3_runtime onnxslim gitpython gitdb smmap; do
    cp "$top"/.gpu-wheels/"$name"-*.whl "$out/" 2>/dev/null || echo "note: no $name wheel in .gpu-wheels" >&2
done
grep -qx '/.hidet-wheels/' "$top/.gitignore" || echo "note: .hidet-wheels/ is not in .gitignore" >&2
echo "wrote $(ls "$out" | wc -l) wheels ($(du -sh "$out" | cut -f1)) in $out (carry: [\".hidet-wheels\"])"
