"""`ios_core.gpu`: clocks read without failing where there is no GPU, and clock locking off unless asked for."""

from __future__ import annotations

import pytest

from ios_core import gpu


def no_nvml():
    raise ImportError("No module named 'pynvml'")


def test_readings_say_when_there_is_no_gpu(monkeypatch):
    monkeypatch.setattr(gpu, "_nvml", no_nvml)
    assert gpu.clocks() == {"available": False, "reason": "ImportError: No module named 'pynvml'"}
    assert gpu.device_info()["available"] is False


def test_throttle_reasons_are_named():
    assert gpu.throttle_reasons(0) == []
    assert gpu.throttle_reasons(0x1 | 0x4 | 0x40) == ["gpu_idle", "sw_power_cap", "hw_thermal_slowdown"]


@pytest.fixture
def smi_calls(monkeypatch):
    calls = []
    monkeypatch.setattr(gpu, "_smi", lambda *args: calls.append(args))
    monkeypatch.setattr(gpu, "_nvml", no_nvml)
    return calls


def test_clock_locking_is_off_by_default(smi_calls):
    with gpu.locked_clocks() as state:
        assert state["locked"] is False
    assert smi_calls == []
    assert gpu.lock_clocks_enabled(None) is False
    assert gpu.lock_clocks_enabled({"device": {"lock_clocks": False}}) is False
    assert gpu.lock_clocks_enabled({"device": {"lock_clocks": True}}) is True


def test_locked_clocks_are_restored_even_on_error(smi_calls):
    with pytest.raises(RuntimeError, match="boom"), gpu.locked_clocks(enabled=True, sm_mhz=1500):
        assert smi_calls == [("-i", "0", "-lgc", "1500,1500")]
        raise RuntimeError("boom")
    assert smi_calls[-1] == ("-i", "0", "-rgc")


def test_locking_needs_a_known_clock(smi_calls):
    with pytest.raises(RuntimeError, match="maximum SM clock is unknown"), gpu.locked_clocks(enabled=True):
        pass
    assert smi_calls == []
