"""Runs of one search split over CPU processes, one torch thread each.

On a CPU one LeNet-5-sized run already keeps a core busy, and two torch threads on one small
network scale poorly, so the way to use a machine's cores is one run per core. The runs of
a search are dealt round-robin to ``workers`` child processes (``python -m
lth_core.engine.workers``), each training its runs one by one with one thread. Every run's
seed depends only on its index, and the results store's locks and checkpoints already make
concurrent writers and interrupted runs safe, so the records are the same whichever process
trains a run (and equal to a one-process search with one torch thread). Only registered
architectures can be sent to a child, which rebuilds the model by name.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

from lth_core.config import SearchConfig, search_config_from_dict, to_dict


class WorkerError(RuntimeError):
    """A worker process failed; the message is its last line of error output. ``usage``:
    it refused bad input (exit code 2), as one process would."""

    def __init__(self, message: str, usage: bool = False) -> None:
        super().__init__(message)
        self.usage = usage


def default_workers(n_runs: int) -> int:
    """One worker per core, never more than there are runs."""
    return max(1, min(os.cpu_count() or 1, n_runs))


def search_in_workers(arch: str, data_spec: str, cfg: SearchConfig, *,
                      runs: Iterable[int], results: str | os.PathLike,
                      workers: int) -> None:
    """Train ``runs`` of ``arch`` in ``workers`` one-thread CPU processes; wait for all.

    Raises WorkerError with a worker's last error line if one fails (the runs it finished
    are stored; the others are left to the next call, which resumes them).
    """
    run_ids = list(runs)
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    shares = [run_ids[i::workers] for i in range(workers) if run_ids[i::workers]]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    with tempfile.TemporaryDirectory(prefix="lth-workers-") as tmp:
        procs = []
        try:
            for i, share in enumerate(shares):
                job = Path(tmp) / f"job-{i}.json"
                job.write_text(json.dumps({
                    "arch": arch, "data": data_spec, "config": to_dict(cfg), "runs": share,
                    "results": str(Path(results).resolve())}))
                err = open(Path(tmp) / f"err-{i}.txt", "w+")  # noqa: SIM115 (closed below)
                procs.append((subprocess.Popen([sys.executable, "-m", "lth_core.engine.workers",
                                                str(job)], env=env, stdout=subprocess.DEVNULL,
                                               stderr=err), err))
            failures = []
            for proc, err in procs:
                if proc.wait() != 0:
                    err.seek(0)
                    lines = [ln for ln in err.read().splitlines() if ln.strip()]
                    failures.append((proc.returncode,
                                     lines[-1] if lines else f"exit code {proc.returncode}"))
        finally:  # an interrupted caller must not leave children training
            for proc, err in procs:
                if proc.poll() is None:
                    proc.terminate()
                    proc.wait()
                err.close()
    usage = [line for code, line in failures if code == 2]
    if usage:  # bad input: the worker's one line, as one process would print it
        raise WorkerError(usage[0].removeprefix("error: "), usage=True)
    if failures:
        raise WorkerError(f"{arch}: a worker failed: {failures[0][1]}")


def _main(job_path: str) -> int:
    import torch

    from lth_core.data import DataSpecError, load_data
    from lth_core.engine.search import search_runs
    from lth_core.models import build
    from lth_core.store import StoreError

    torch.set_num_threads(1)
    job = json.loads(Path(job_path).read_text())
    arch = job["arch"]
    try:
        report = search_runs(lambda: build(arch), load_data(job["data"]),
                             search_config_from_dict(job["config"]), name=arch,
                             runs=job["runs"], results=job["results"], device="cpu",
                             population=1, progress=False)
    except (DataSpecError, StoreError, ValueError) as err:  # bad input: one line for the parent
        print(err, file=sys.stderr)
        return 2
    if report.failed:
        print(f"runs {report.failed} of {arch} failed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1]))
