"""A GPU of its own for each job of the workflow.

``python -m ios_core.gpu_lock -- CMD ...`` runs CMD on a GPU of its own: it takes an
exclusive lock on one of the visible GPUs (``CUDA_VISIBLE_DEVICES`` when set, as SLURM does, else
every GPU ``nvidia-smi -L`` lists), sets ``CUDA_VISIBLE_DEVICES`` to it and becomes CMD (exec),
still holding the lock, which the kernel releases when CMD ends, however it ends. So
``snakemake --cores 2 --resources gpu=2`` runs two GPU jobs at once, never on the same GPU.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ios_core.errors import run_command

LOCK_DIR = Path(tempfile.gettempdir()) / f"ios-core-gpu-locks-{os.getuid()}"


def visible_gpus() -> list[str]:
    """The GPUs this process may use, as ``CUDA_VISIBLE_DEVICES`` entries."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [g for g in listed.split(",") if g.strip()]
    try:
        lines = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, check=True).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        return []
    return [str(i) for i, line in enumerate(lines) if line.startswith("GPU ")]


def claim_gpu(gpus: list[str], lock_dir: Path = LOCK_DIR, poll_s: float = 0.5, timeout_s: float = 3600.0) -> tuple[
        str, int]:
    """Lock one of ``gpus`` (waiting while all are taken); returns it and the lock's file descriptor."""
    lock_dir.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout_s
    while True:
        for gpu in gpus:
            fd = os.open(lock_dir / f"gpu-{gpu}.lock", os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            return gpu, fd
        if time.monotonic() > deadline:
            raise TimeoutError(f"no free GPU among {gpus} after {timeout_s:.0f} s")
        time.sleep(poll_s)


def with_gpu(command: list[str]) -> None:
    """Become ``command`` with one locked GPU visible (see the module docstring); never returns."""
    gpus = visible_gpus()
    if not gpus:
        print("gpu_lock: no GPU visible; running without one", file=sys.stderr)
        os.execvp(command[0], command)
    gpu, fd = claim_gpu(gpus)
    os.set_inheritable(fd, True)  # the lock lives as long as the command does
    os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    print(f"gpu_lock: CUDA_VISIBLE_DEVICES={gpu}", file=sys.stderr)
    os.execvp(command[0], command)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ios_core.gpu_lock", description=__doc__.splitlines()[0])
    parser.add_argument("cmd", nargs=argparse.REMAINDER, help="-- the command and its arguments")
    args = parser.parse_args(argv)
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        parser.error("needs a command after --")
    with_gpu(cmd)
    return 0  # not reached: with_gpu execs


if __name__ == "__main__":
    run_command(main)
