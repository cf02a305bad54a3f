"""The throughput benchmark runs end to end on CPU (tiny sizes; no speed is asserted here)."""

from __future__ import annotations

import re

import pytest
import torch

from benchmarks import search_throughput

TINY = ["--archs", "lenet5", "--steps", "2", "--warmup", "1", "--population", "2",
        "--device", "cpu"]


def test_benchmark_runs_all_three_ways(capsys, tmp_path):
    out_json = tmp_path / "throughput.json"
    report = search_throughput.main([*TINY, "--out", str(out_json)])
    out = capsys.readouterr().out
    for label in search_throughput.WAY_LABELS.values():
        assert label in out
    last = out.strip().splitlines()[-1]
    m = re.fullmatch(r"speedup_population_vs_naive_lenet5=(\d+\.\d\d)", last)
    assert m and float(m.group(1)) > 0, last
    ways = report["archs"]["lenet5"]["ways"]
    assert set(ways) == {"naive", "engine", "population"}
    assert ways["population"]["runs"] == 2
    assert all(w["images_per_s"] > 0 for w in ways.values())
    assert out_json.is_file()


def test_benchmark_rejects_unknown_arch():
    with pytest.raises(SystemExit):
        search_throughput.parse_args(["--archs", "lenet5,nope"])


def test_population_halves_on_out_of_memory(monkeypatch, capsys):
    built = []

    def fake_step(arch, data, device, batch_size, size):
        built.append(size)
        if size > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return lambda i: torch.zeros(size)

    monkeypatch.setattr(search_throughput, "population_step", fake_step)
    args = search_throughput.parse_args(["--population", "8", "--steps", "1", "--warmup", "0",
                                         "--device", "cpu"])
    timing = search_throughput.time_population("lenet5", None, torch.device("cpu"), args)
    assert built == [8, 4, 2] and timing.runs == 2
    assert "retrying with 4" in capsys.readouterr().out


def test_cpu_ceiling_runs_and_restores_threads(capsys, tmp_path):
    from benchmarks import cpu_ceiling

    threads = torch.get_num_threads()
    out = cpu_ceiling.main(["--population", "2", "--steps", "1", "--out", str(tmp_path / "c.json")])
    assert set(out["img_per_s"]) == {"one_run", "convs_only", "population", "population_nhwc"}
    assert all(v > 0 for v in out["img_per_s"].values())
    assert torch.get_num_threads() == threads
    assert "population per image vs one run" in capsys.readouterr().out
