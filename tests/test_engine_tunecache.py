"""The autotuning cache's keys and files, without a GPU: a winner is found only where all its inputs are the same."""

import json

import pytest

from ios_core.engine import tunecache
from ios_core.engine.tunecache import TuneCache, tune_space

ENVIRONMENT = {"name": "NVIDIA H100 80GB HBM3", "driver": "580.159.04", "cuda": "13.0", "cudnn": "9.19.0"}
GEOMETRY = json.dumps({"precision": "fp32", "x_dims": [1, 8, 7, 7]}, sort_keys=True)
WINNER = {"engine": "eng0", "ms": 0.01, "heuristic_ms": 0.02}


def test_the_space_names_the_gpu_and_cudnn_and_digests_every_input(monkeypatch):
    space = tune_space(ENVIRONMENT)
    assert space.startswith("NVIDIA H100 80GB HBM3/cudnn 9.19.0/")
    others = {tune_space({**ENVIRONMENT, key: "other"}) for key in ENVIRONMENT}
    monkeypatch.setattr(tunecache, "CANDIDATE_RUNS", tunecache.CANDIDATE_RUNS + 1)  # another way of timing
    others.add(tune_space(ENVIRONMENT))
    assert space not in others and len(others) == len(ENVIRONMENT) + 1


def test_winners_round_trip_and_stay_apart_by_environment(tmp_path):
    path = tmp_path / "tune" / "tune.json"
    cache = TuneCache.load(path, ENVIRONMENT)
    cache.entries[cache.key(True, GEOMETRY)] = WINNER
    cache.save()
    again = TuneCache.load(path, ENVIRONMENT)
    assert again.entries.get(again.key(True, GEOMETRY)) == WINNER and again.key(False, GEOMETRY) not in again.entries
    newer = TuneCache.load(path, {**ENVIRONMENT, "driver": "590.1"})
    assert newer.key(True, GEOMETRY) not in newer.entries and len(newer.entries) == 1  # kept, not reused


def test_invalid_winners_are_skipped_with_one_warning(tmp_path, capsys):
    path = tmp_path / "tune.json"
    cache = TuneCache.load(None, ENVIRONMENT)
    poisons = [{**WINNER, "ms": -1}, {**WINNER, "ms": float("nan")}, {**WINNER, "heuristic_ms": None},
               {**WINNER, "ms": True}, {**WINNER, "engine": ""}, {"engine": "eng0"}, "eng0"]
    entries = {cache.key(True, str(k)): poison for k, poison in enumerate(poisons)}
    path.write_text(json.dumps({**entries, cache.key(True, GEOMETRY): WINNER}))
    loaded = TuneCache.load(path, ENVIRONMENT)
    assert list(loaded.entries) == [cache.key(True, GEOMETRY)]
    assert capsys.readouterr().err.splitlines() == [
        f"warning: tune cache {path}: skipped {len(poisons)} invalid entries; their geometries are tuned again"]


@pytest.mark.parametrize("content", [b'{"torn": ', b"\xff\xfe", b"[1, 2]"])
def test_a_file_that_is_no_json_object_is_tuned_again_and_replaced(tmp_path, capsys, content):
    path = tmp_path / "tune.json"
    path.write_bytes(content)
    cache = TuneCache.load(path, ENVIRONMENT)
    assert cache.entries == {}
    assert capsys.readouterr().err.splitlines() == [
        f"warning: tune cache {path}: not a JSON object of winners; every geometry is tuned again"]
    cache.entries[cache.key(True, GEOMETRY)] = WINNER
    cache.save()
    assert TuneCache.load(path, ENVIRONMENT).entries == cache.entries


def test_a_cache_that_cannot_be_written_is_said_once_and_kept_in_memory(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    cache = TuneCache.load(tmp_path / "file" / "tune.json", ENVIRONMENT)  # under a file: never writable
    cache.entries[cache.key(True, GEOMETRY)] = WINNER
    cache.save()
    cache.save()
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"warning: tune cache {tmp_path / 'file' / 'tune.json'}: cannot write (File exists)")
    assert line.endswith("; going on with the winners in memory only")
    assert cache.entries == {cache.key(True, GEOMETRY): WINNER}
