"""The recipe calibration, run on the CPU with tiny data: one population of budgets, each
member the search's dense stage 0 of its run, evidence written, the rule applied."""

from __future__ import annotations

import json

import pytest
import torch

from benchmarks import calibrate
from lth_core.config import SearchConfig, default_train_config
from lth_core.data import load_data
from lth_core.engine.search import run_search
from lth_core.models import build
from lth_core.store import load_results

DATA = "synthetic:300:60"  # 250 train (4 steps of 64), 50 val, 60 test
TINY = ["--arch", "lenet5", "--epochs", "2,1", "--replicates", "1", "--data", DATA,
        "--device", "cpu", "--set", "batch_size=64", "--set", "patience=3"]


def test_calibration_writes_evidence_and_matches_the_search(tmp_path, capsys):
    torch.set_num_threads(1)
    out = tmp_path / "calibrate-lenet5.json"
    assert calibrate.main([*TINY, "--out", str(out)]) == 0
    ev = json.loads(out.read_text())
    assert ev["arch"] == "lenet5" and ev["epochs"] == [1, 2]
    assert ev["paper_dense_test_acc"] == {"mean": 67.92, "std": 0.96}
    assert ev["provenance"]["device_type"] == "cpu" and ev["date"]
    assert ev["data"]["name"] == "synthetic" and ev["recipe"]["batch_size"] == 64
    members = {m["max_epochs"]: m for m in ev["members"]}
    assert sorted(members) == [1, 2] and all(m["epochs"] == e for e, m in members.items())
    assert set(ev["budgets"]) == {"1", "2"}
    # random labels stay far below the paper's 67.92 - 0.96: no budget reaches it
    assert ev["chosen_epochs"] is None and not any(b["reaches"] for b in ev["budgets"].values())
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["chosen_epochs"] is None

    # the 2-epoch member is run 0's dense stage 0 of a search with max_epochs=2
    train = default_train_config("lenet5", batch_size=64, patience=3, max_epochs=2)
    run_search(lambda: build("lenet5"), load_data(DATA), SearchConfig(stages=1, train=train),
               name="lenet5", runs=1, results=tmp_path / "search", device="cpu",
               progress=False)
    rec = load_results(tmp_path / "search").iloc[0]
    assert abs(rec.test_acc - members[2]["test_acc"]) <= 100 / 60 + 1e-9
    assert rec.best_epoch == members[2]["best_epoch"]


def test_the_fewest_epochs_within_the_papers_std_are_chosen():
    paper = (90.0, 0.5)
    members = [{"max_epochs": e, "run": j, "test_acc": a}
               for e, j, a in [(10, 0, 88.0), (10, 1, 88.4), (20, 0, 89.4), (20, 1, 89.8),
                               (30, 0, 90.5), (30, 1, 90.1)]]
    members.append({"max_epochs": 40, "run": 0, "diverged": "training diverged"})
    s = calibrate.summarise(members, paper)
    assert s["chosen_epochs"] == 20  # mean 89.6 >= 90.0 - 0.5; 10 epochs (88.2) do not
    assert [b["reaches"] for b in s["budgets"].values()] == [False, True, True]
    assert s["budgets"]["20"]["minus_paper"] == pytest.approx(-0.4)
    assert calibrate.summarise(members[:2], paper)["chosen_epochs"] is None


@pytest.mark.parametrize("argv", [["--arch", "lenet9"], ["--arch", "lenet5-w0.5"],
                                  ["--arch", "lenet5", "--set", "nope=1"],
                                  ["--arch", "lenet5", "--set", "augment=maybe"],
                                  ["--arch", "lenet5", "--epochs", "0,2"],
                                  ["--arch", "lenet5", "--set", "warmup_epochs=2",
                                   "--epochs", "1,3"]])
def test_bad_input_is_one_line_exit_2(argv, capsys):
    assert calibrate.main([*argv, "--data", DATA, "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err
