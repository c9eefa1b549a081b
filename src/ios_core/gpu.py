"""The GPU as a measuring instrument: what it is, and its clocks and throttle reasons, read through NVML.

Every measurement carries `device_info()` and a `clocks()` reading taken before and after it. What a
measurement is valid for -- the GPU and its software, `ENVIRONMENT_KEYS` -- is read by the engine
(`ios_core.engine.environment`, which adds the cuDNN version to `device_info()`); a stage profile and an
autotuning winner are keyed by those keys (`environment_inputs`). NVML
(``nvidia-ml-py``, module ``pynvml``) is imported when a function is called, never at import;
without it, or without a GPU, readings say so instead of failing.

Clock locking (`locked_clocks`) is for users who own their GPU: it runs ``nvidia-smi -lgc`` and
restores with ``-rgc`` on exit, on error too. It is off unless ``device.lock_clocks=true`` is
configured, and must stay off on a shared or lent GPU: there, record the clocks instead.
"""

from __future__ import annotations

import atexit
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

ENVIRONMENT_KEYS = ("name", "driver", "cuda", "cudnn")
"""What a measurement is valid for besides its settings: the GPU's name, its driver, CUDA and cuDNN versions."""

_THROTTLE_REASONS = {
    0x1: "gpu_idle",
    0x2: "applications_clocks_setting",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
}


def _nvml() -> Any:
    import pynvml

    pynvml.nvmlInit()
    return pynvml


def throttle_reasons(mask: int) -> list[str]:
    """The names of the reasons set in an NVML clocks-event (throttle) bit mask."""
    return [name for bit, name in _THROTTLE_REASONS.items() if mask & bit]


def device_info(index: int = 0) -> dict[str, Any]:
    """The GPU's name, driver and CUDA versions, memory and clock limits; ``{"available": False}`` without one."""
    try:
        nvml = _nvml()
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        cuda = nvml.nvmlSystemGetCudaDriverVersion_v2()
        return {
            "available": True,
            "name": _text(nvml.nvmlDeviceGetName(handle)),
            "driver": _text(nvml.nvmlSystemGetDriverVersion()),
            "cuda_driver": f"{cuda // 1000}.{cuda % 1000 // 10}",
            "memory_bytes": int(nvml.nvmlDeviceGetMemoryInfo(handle).total),
            "max_sm_mhz": int(nvml.nvmlDeviceGetMaxClockInfo(handle, nvml.NVML_CLOCK_SM)),
            "max_mem_mhz": int(nvml.nvmlDeviceGetMaxClockInfo(handle, nvml.NVML_CLOCK_MEM)),
        }
    except Exception as error:  # noqa: BLE001 -- no NVML, no driver, no GPU: all mean "not available"
        return {"available": False, "reason": f"{type(error).__name__}: {error}"}


def environment_inputs(environment: Mapping[str, Any]) -> dict[str, str]:
    """The `ENVIRONMENT_KEYS` of ``environment``, as text; a ValueError names any that is missing."""
    missing = [key for key in ENVIRONMENT_KEYS if key not in environment]
    if missing:
        raise ValueError(f"the measuring environment {dict(environment)} lacks {missing}")
    return {key: str(environment[key]) for key in ENVIRONMENT_KEYS}


def clocks(index: int = 0) -> dict[str, Any]:
    """SM and memory clocks (MHz), temperature, power and throttle reasons, now."""
    try:
        nvml = _nvml()
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        reading: dict[str, Any] = {
            "available": True,
            "sm_mhz": int(nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_SM)),
            "mem_mhz": int(nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_MEM)),
            "temperature_c": int(nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU)),
        }
        try:
            reading["power_w"] = nvml.nvmlDeviceGetPowerUsage(handle) / 1000
            reading["throttle"] = throttle_reasons(int(nvml.nvmlDeviceGetCurrentClocksThrottleReasons(handle)))
        except Exception as error:  # noqa: BLE001 -- some platforms hide these two
            reading["throttle"] = [f"unreadable: {error}"]
        return reading
    except Exception as error:  # noqa: BLE001
        return {"available": False, "reason": f"{type(error).__name__}: {error}"}


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _smi(*args: str) -> None:
    subprocess.run(["nvidia-smi", *args], check=True, capture_output=True, text=True)


def lock_clocks_enabled(config: Mapping[str, Any] | None) -> bool:
    """Whether ``device.lock_clocks`` is true in a (Hydra/OmegaConf or plain) config; false when absent."""
    device = (config or {}).get("device") or {}
    return bool(device.get("lock_clocks", False))


@contextmanager
def locked_clocks(enabled: bool = False, sm_mhz: int | None = None, index: int = 0) -> Iterator[dict[str, Any]]:
    """Lock the SM clock for the duration (``nvidia-smi -lgc``), restoring it (``-rgc``) on exit or error.

    Parameters
    ----------
    enabled
        Off by default: then nothing is run and the clocks are only read. Switch on only on a
        GPU you own (``device.lock_clocks=true``), never on a shared or lent one.
    sm_mhz
        The clock to lock at; the GPU's maximum SM clock when omitted.
    index
        Which GPU.

    Yields
    ------
    dict
        ``{"locked": bool, "sm_mhz": ...}``.
    """
    if not enabled:
        yield {"locked": False, "clocks": clocks(index)}
        return
    target = sm_mhz or device_info(index).get("max_sm_mhz")
    if not target:
        raise RuntimeError("cannot lock clocks: the GPU's maximum SM clock is unknown")

    def restore() -> None:
        _smi("-i", str(index), "-rgc")

    _smi("-i", str(index), "-lgc", f"{target},{target}")
    atexit.register(restore)  # also if the process is ended before the finally below runs
    try:
        yield {"locked": True, "sm_mhz": target}
    finally:
        restore()
        atexit.unregister(restore)
