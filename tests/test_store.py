"""The results store's own guarantees, apart from any engine: what a killed writer leaves
behind is swept by the next process that holds the folder, never what a live one writes."""

import os
import subprocess
import sys

from lth_core.store import ResultsStore, _tmp_prefix, atomic_write_bytes, sweep_temporaries


def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _left_behind(folder, name: str, pid: int):
    """A temporary file as ``atomic_write_bytes`` names it, as if written by ``pid``."""
    prefix = _tmp_prefix(name).replace(f".{os.getpid()}-", f".{pid}-")
    path = folder / f"{prefix}abc123.tmp"
    path.write_bytes(b"{half a rec")
    return path


def test_a_killed_writers_temporary_is_swept_when_the_run_is_locked(tmp_path):
    store = ResultsStore(tmp_path)
    run = store.run_dir("lenet5", 0)
    run.mkdir(parents=True)
    (run / "ckpt").mkdir()
    dead = _left_behind(run, "stage-1.json", _dead_pid())
    dead_ckpt = _left_behind(run / "ckpt", "state.pt", _dead_pid())
    live = _left_behind(run, "stage-2.json", os.getpid())  # a writer still at work
    with store.lock("lenet5", 0) as held:
        assert held
    assert not dead.exists() and not dead_ckpt.exists()
    assert live.exists()


def test_a_held_lock_sweeps_nothing_and_records_are_never_swept(tmp_path):
    store = ResultsStore(tmp_path)
    atomic_write_bytes(store.record_path("lenet5", 0, 0), b"{}")
    run = store.run_dir("lenet5", 0)
    dead = _left_behind(run, "stage-1.json", _dead_pid())
    (run / ".lock").write_text('{"host": "elsewhere", "pid": 1, "time": 0}')
    store.stale_after = 1e9  # the other host's lock is fresh: not ours to sweep under
    with store.lock("lenet5", 0) as held:
        assert not held
    assert dead.exists()
    assert sweep_temporaries(run) == [dead] and not dead.exists()
    assert store.record_path("lenet5", 0, 0).read_bytes() == b"{}"
    assert sorted(p.name for p in run.iterdir()) == [".lock", "stage-0.json"]


def test_no_temporary_is_left_by_a_normal_write(tmp_path):
    ResultsStore(tmp_path)
    atomic_write_bytes(tmp_path / "a.json", b"1")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]


def test_files_follow_the_umask(tmp_path):
    """Others on a shared cluster can read the results when the umask lets them."""
    from lth_core import store as store_module

    atomic_write_bytes(tmp_path / "r.json", b"1")
    assert (tmp_path / "r.json").stat().st_mode & 0o777 == 0o666 & ~store_module._UMASK


def test_a_training_set_too_small_for_a_validation_set_is_refused():
    import pytest

    from lth_core.data import DataSpecError, load_data

    with pytest.raises(DataSpecError, match="no validation set"):
        load_data("synthetic:5:5")
    assert len(load_data("synthetic:12:5").val) == 2
