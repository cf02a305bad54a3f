"""The GPU campaign, run on the CPU with tiny data: whole stages within a budget, a second
call continues from the records alone, and only records are packed."""

from __future__ import annotations

import json
import shutil
import tarfile

import pytest
import torch

from benchmarks import gpu_campaign
from lth_core.store import load_results

ARGS = ["--data", "synthetic:600:200", "--plan", "lenet5:2", "--stages", "2",
        "--device", "cpu"]


@pytest.fixture(autouse=True)
def _short_recipe(monkeypatch):
    """Two epochs a stage, so the campaign's stages take seconds."""
    real = gpu_campaign.default_train_config
    monkeypatch.setattr(gpu_campaign, "default_train_config",
                        lambda arch, **kw: real(arch, max_epochs=2, patience=2, batch_size=64,
                                                **kw))
    torch.set_num_threads(1)


def test_campaign_stops_at_a_stage_boundary_and_continues_from_records(tmp_path):
    out = tmp_path / "out"
    # a budget too small for the probe's estimate of one stage: nothing is trained
    assert gpu_campaign.main([*ARGS, "--budget-s", "0.001", "--results", str(tmp_path),
                              "--out", str(out)]) == 0
    summary = json.loads((out / "campaign.json").read_text())
    assert summary["stages"] == [] and "stage 0" in summary["stopped"]

    assert gpu_campaign.main([*ARGS, "--budget-s", "600", "--results", str(tmp_path),
                              "--stages", "1"]) == 0
    shutil.rmtree(tmp_path / "cpu" / "lenet5" / "run-000" / "ckpt")
    shutil.rmtree(tmp_path / "cpu" / "lenet5" / "run-001" / "ckpt")
    assert gpu_campaign.main([*ARGS, "--budget-s", "600", "--results", str(tmp_path),
                              "--out", str(out)]) == 0
    summary = json.loads((out / "campaign.json").read_text())
    assert [s["stage"] for s in summary["stages"]] == [1]  # stage 0 was not retrained
    df = load_results(tmp_path / "cpu")
    assert sorted(zip(df.run, df.stage, strict=True)) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    with tarfile.open(out / "results-cpu.tgz") as tar:
        names = tar.getnames()
    assert "cpu/lenet5/run-001/stage-1.json" in names
    assert not [n for n in names if "ckpt" in n or n.endswith(".lock")]


def test_bad_plan_is_one_line_exit_2(tmp_path, capsys):
    assert gpu_campaign.main(["--budget-s", "5", "--data", "x", "--plan", "lenet9:5",
                              "--results", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err
