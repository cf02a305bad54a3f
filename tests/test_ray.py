"""Ticket search on Ray (a local cluster of 2 CPUs): the records of a one-process search,
through a worker killed mid-stage and a driver killed after its first record."""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from conftest import TINY_DATA

ray = pytest.importorskip("ray")

from lth_core.config import SearchConfig, default_train_config  # noqa: E402
from lth_core.engine.search import run_search, ticket_search  # noqa: E402
from lth_core.models import build  # noqa: E402
from lth_core.store import load_results  # noqa: E402

# what the CLI below runs: 2 stages of at most 3 epochs, the default measurements
CFG = SearchConfig(stages=2, train=default_train_config("lenet5", max_epochs=3, patience=3,
                                                        batch_size=64))
EXACT = ["arch", "run", "stage", "density", "n_weights", "epochs", "best_epoch"]
TASK_TITLE = b"ray::_stage_task"
LENET5 = functools.partial(build, "lenet5")


@pytest.fixture(scope="module")
def cluster():
    """A local Ray of 2 CPUs. On a machine too loaded for the raylet to register within
    Ray's fixed 30 s, twice, the module is skipped with that reason."""
    for attempt in range(2):
        try:
            ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
            break
        except Exception as err:  # ray raises a plain Exception here
            ray.shutdown()
            if "timed out during startup" not in str(err):
                raise
            if attempt:
                pytest.skip(f"Ray could not start on this machine: {err}")
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_data):
    """The same search in one process, one torch thread (as each Ray task has)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return ticket_search(lambda: build("lenet5"), tiny_data, CFG, name="lenet5", runs=2,
                             results=tmp_path_factory.mktemp("ref"), device="cpu",
                             progress=False)
    finally:
        torch.set_num_threads(threads)


def _same_records(got, want, data) -> None:
    """Integers exact, accuracies within one example (``test_search._within_one_example``)."""
    assert len(got) == len(want)
    assert got[EXACT].equals(want[EXACT])
    for col, split in (("val_acc", data.val), ("test_acc", data.test)):
        diff = got[col].to_numpy() - want[col].to_numpy()
        assert abs(diff).max() <= 100.0 / len(split) + 1e-9, (col, diff)
    assert (got["traj_len"] - want["traj_len"]).abs().max() < 1e-2 * want["traj_len"].max()


def test_ray_records_equal_a_one_thread_search(cluster, tmp_path, tiny_data, reference):
    report = run_search(LENET5, tiny_data, CFG, name="lenet5", runs=2, results=tmp_path,
                        device="cpu", ray="local", progress=False)
    assert report.finished == [0, 1] and not report.failed
    got = load_results(tmp_path)
    _same_records(got, reference, tiny_data)
    assert set(got["executor"]) == {"ray"} and got["ray_node"].notna().all()
    assert set(got["device"]) == set(reference["device"])  # one torch thread
    layout = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert "lenet5/run-000/hidden-stage-1.npz" in layout and "lenet5/search.json" in layout
    assert not [p for p in layout if "ckpt" in p or p.endswith((".tmp", ".lock"))]


def _descendants(root: int) -> set[int]:
    parent = {}
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                stat = Path(f"/proc/{p}/stat").read_text()
            except OSError:
                continue
            parent[int(p)] = int(stat.rsplit(")", 1)[1].split()[1])
    out, frontier = set(), {root}
    while frontier:
        frontier = {p for p, pp in parent.items() if pp in frontier} - out
        out |= frontier
    return out


def _busy_workers() -> list[int]:
    """Ray workers of this test's cluster now running a stage task (proctitle)."""
    pids = []
    for pid in _descendants(os.getpid()):
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(TASK_TITLE):
                pids.append(pid)
        except OSError:
            pass
    return pids


def test_a_killed_worker_loses_only_its_stage(cluster, tmp_path, tiny_data, reference):
    killed: list[int] = []

    def kill_one() -> None:
        deadline = time.time() + 120
        while not list(tmp_path.rglob("stage-*.json")) and time.time() < deadline:
            time.sleep(0.05)
        while not killed and time.time() < deadline:
            busy = _busy_workers()
            if busy:
                os.kill(busy[0], signal.SIGKILL)
                killed.append(busy[0])
            time.sleep(0.05)

    killer = threading.Thread(target=kill_one)
    killer.start()
    report = run_search(LENET5, tiny_data, CFG, name="lenet5", runs=2, results=tmp_path,
                        device="cpu", ray="local", progress=False)
    killer.join()
    assert killed, "no worker was running a stage task"
    assert report.finished == [0, 1] and not report.failed
    _same_records(load_results(tmp_path), reference, tiny_data)
    assert not list(tmp_path.rglob("*.tmp"))


CLI = [sys.executable, "-m", "lth_core", "search", "--arch", "lenet5", "--runs", "2",
       "--stages", "2", "--max-epochs", "3", "--patience", "3", "--batch-size", "64",
       "--data", TINY_DATA, "--no-progress", "--device", "cpu"]


def test_driver_killed_after_a_record_then_rerun(cluster, tmp_path, tiny_data, reference):
    """SIGKILL of ``lth search --ray ADDRESS`` once a record is written; the rerun continues
    from the store to the records of an uninterrupted one-process search."""
    results = tmp_path / "killed"
    cmd = CLI + ["--results", str(results), "--ray", cluster]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 150
    while (not list(results.rglob("stage-*.json")) and proc.poll() is None
           and time.time() < deadline):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first = sorted(p.name for p in results.rglob("stage-*.json"))
    assert first and len(first) < 4, first
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    got = load_results(results)
    _same_records(got, reference, tiny_data)
    assert set(got["executor"]) == {"ray"}
    assert not list(results.rglob("*.tmp")) and not list(results.rglob(".lock"))
