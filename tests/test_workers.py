"""Runs split over one-thread CPU processes give the records of a one-process search."""

from __future__ import annotations

import pytest
import torch
from conftest import TINY_DATA, tiny_config

from lth_core import build, load_results, ticket_search
from lth_core.engine.workers import WorkerError, search_in_workers

CFG = tiny_config(stages=2)
NUMBERS = ["run", "stage", "density", "val_acc", "test_acc", "traj_len", "traj_len_2d",
           "epochs", "best_epoch"]


def test_workers_store_the_records_of_a_one_thread_search(tmp_path, tiny_data):
    search_in_workers("lenet5", TINY_DATA, CFG, runs=range(3), results=tmp_path / "w",
                      workers=2)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ticket_search(lambda: build("lenet5"), tiny_data, CFG, name="lenet5", runs=3,
                      results=tmp_path / "one", device="cpu", progress=False)
    finally:
        torch.set_num_threads(threads)
    w, one = load_results(tmp_path / "w"), load_results(tmp_path / "one")
    assert len(w) == 6 and sorted(w["run"].unique()) == [0, 1, 2]
    assert w[NUMBERS].equals(one[NUMBERS])
    assert set(w["device"]) == {d for d in one["device"]}  # "<cpu> (1 threads)"


def test_a_failing_worker_is_one_clear_error_and_keeps_nothing_half_done(tmp_path):
    with pytest.raises(WorkerError, match="unknown data spec or missing path") as err:
        search_in_workers("lenet5", str(tmp_path / "missing.tar.gz"), CFG, runs=[0, 1],
                          results=tmp_path / "r", workers=2)
    assert "\n" not in str(err.value) and "Traceback" not in str(err.value)
    assert not list(tmp_path.rglob("stage-*.json"))
    with pytest.raises(ValueError):
        search_in_workers("lenet5", TINY_DATA, CFG, runs=[0], results=tmp_path, workers=0)
