"""Runs split over one-thread CPU processes give the records of a one-process search."""

from __future__ import annotations

import functools
import multiprocessing
import os

import pytest
import torch
from conftest import tiny_config

from lth_core import build, load_results, ticket_search
from lth_core.engine.search import run_search
from lth_core.engine.workers import WorkerError

CFG = tiny_config(stages=2)
# Counts and decisions: density counts mask entries, epochs = max_epochs = patience here, and
# the best epoch is a comparison of accuracies (if a one-example flip ever changed it, the
# runs would no longer be comparable at all).
EXACT = ["run", "stage", "density", "epochs", "best_epoch"]


def test_workers_store_the_records_of_a_one_thread_search(tmp_path, tiny_data):
    report = run_search(functools.partial(build, "lenet5"), tiny_data, CFG, name="lenet5",
                        runs=3, results=tmp_path / "w", workers=2, progress=False)
    assert report.finished == [0, 1, 2] and not report.failed
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
    # the driver writes every file; the workers only checkpoint: nothing half-written stays
    assert not list((tmp_path / "w").rglob("*.tmp")) and not list((tmp_path / "w").rglob(".lock"))


def lenet5_dying_in_a_worker():
    """LeNet-5 here; in a worker process, the process dies (as under the OOM killer)."""
    if multiprocessing.parent_process() is not None:
        os._exit(9)
    return build("lenet5")


def test_a_dying_worker_is_one_clear_error_and_keeps_nothing_half_done(tmp_path, tiny_data):
    with pytest.raises(WorkerError, match="a worker process died") as err:
        run_search(lenet5_dying_in_a_worker, tiny_data, CFG, name="lenet5", runs=[0, 1],
                   results=tmp_path / "r", workers=2, progress=False)
    assert "\n" not in str(err.value) and "Traceback" not in str(err.value)
    assert not list(tmp_path.rglob("stage-*.json")) and not list(tmp_path.rglob(".lock"))


def test_workers_refuse_what_they_cannot_run_before_writing(tmp_path, tiny_data):
    with pytest.raises(ValueError, match="must pickle"):
        run_search(lambda: build("lenet5"), tiny_data, CFG, runs=[0], results=tmp_path,
                   workers=2, progress=False)
    with pytest.raises(ValueError, match="workers must be >= 1"):
        run_search(functools.partial(build, "lenet5"), tiny_data, CFG, runs=[0],
                   results=tmp_path, workers=0, progress=False)
    assert not list(tmp_path.rglob("*.json"))
