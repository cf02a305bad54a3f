"""Runs split over one-thread CPU processes give the records of a one-process search."""

from __future__ import annotations

import pytest
import torch
from conftest import TINY_DATA, tiny_config

from lth_core import build, load_results, ticket_search
from lth_core.engine.workers import WorkerError, search_in_workers

CFG = tiny_config(stages=2)
# Counts and decisions: density counts mask entries, epochs = max_epochs = patience here, and
# the best epoch is a comparison of accuracies (if a one-example flip ever changed it, the
# runs would no longer be comparable at all).
EXACT = ["run", "stage", "density", "epochs", "best_epoch"]


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
    assert w[EXACT].equals(one[EXACT])
    # Two processes, same kernels and one thread each: measured equal to the last bit, on
    # AVX-512 and on ATEN_CPU_CAPABILITY=default ONEDNN_MAX_CPU_ISA=SSE41. Separate processes
    # are not promised that (MKL and oneDNN may pick kernels by buffer alignment), so:
    # accuracies within one example, trajectory lengths within 1e-3 (rounding leaves weights
    # up to ~1e-3 apart after a few epochs; 1e-5 apart moved LeNet-5's by 1.5e-6).
    for col, split in (("val_acc", tiny_data.val), ("test_acc", tiny_data.test)):
        assert (w[col] - one[col]).abs().max() <= 100.0 / len(split), col
    for col in ("traj_len", "traj_len_2d"):
        assert ((w[col] - one[col]).abs() <= 1e-3 * one[col].abs()).all(), col
    assert set(w["device"]) == {d for d in one["device"]}  # "<cpu> (1 threads)"


def test_a_failing_worker_is_one_clear_error_and_keeps_nothing_half_done(tmp_path):
    with pytest.raises(WorkerError, match="unknown data spec or missing path") as err:
        search_in_workers("lenet5", str(tmp_path / "missing.tar.gz"), CFG, runs=[0, 1],
                          results=tmp_path / "r", workers=2)
    assert "\n" not in str(err.value) and "Traceback" not in str(err.value)
    assert not list(tmp_path.rglob("stage-*.json"))
    with pytest.raises(ValueError):
        search_in_workers("lenet5", TINY_DATA, CFG, runs=[0], results=tmp_path, workers=0)
