"""Stages computed in CPU processes of one torch thread each (``run_search(workers=N)``).

On a CPU one LeNet-5-sized run already keeps a core busy, and two torch threads on one small
network scale poorly, so the way to use a machine's cores is one run per core. The search's
driver (``search._Driver``) sends each run's stages to a ``ProcessPoolExecutor`` (spawn) whose
processes hold the data and run ``stage.compute_stage``; they checkpoint every epoch into the
store, and the driver writes every record, so the records are those of a one-process search
with one torch thread.
"""

from __future__ import annotations

import os
import pickle
import signal
from collections.abc import Callable
from concurrent import futures
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from typing import Any

import torch
from torch import nn

from lth_core.engine.stage import StageContext, StageJob, StageResult


class WorkerError(RuntimeError):
    """A worker process died (killed, out of memory); the stages it finished are stored."""


def default_workers(n_runs: int) -> int:
    """One worker per core, never more than there are runs."""
    return max(1, min(os.cpu_count() or 1, n_runs))


_CTX: dict[str, StageContext] = {}  # a worker process's search: set once by _init


def _init(ctx: StageContext) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle
    torch.set_num_threads(1)
    _CTX["search"] = ctx


def _stage(jobs: list[StageJob], population: bool) -> list[StageResult]:
    return _CTX["search"].compute(jobs, torch.device("cpu"), population)


class WorkerExecutor:
    """``workers`` one-thread CPU processes, one run each (the interface of
    ``search.LocalExecutor``)."""

    checkpoints = True

    def __init__(self, workers: int, model_fn: Callable[[], nn.Module]):
        try:
            pickle.dumps(model_fn)
        except Exception:
            raise ValueError("workers rebuild the model in other processes, so the model "
                             "factory must pickle: a module-level function or "
                             "functools.partial(build, arch), not a lambda") from None
        self.workers = workers
        self.pool: futures.ProcessPoolExecutor | None = None

    def device_type(self) -> str:
        return "cpu"

    def start(self, ctx: StageContext, n_runs: int, population: int | None) -> int:
        self.n = min(self.workers, n_runs)
        self.pool = futures.ProcessPoolExecutor(
            self.n, mp_context=get_context("spawn"), initializer=_init, initargs=(ctx,))
        return 1

    def capacity(self) -> int:
        return self.n

    def submit(self, jobs: list[StageJob], population: bool) -> futures.Future:
        assert self.pool is not None
        return self.pool.submit(_stage, jobs, population)

    def wait(self, handles: list[Any], timeout: float) -> list[tuple[Any, Any]]:
        done, _ = futures.wait(handles, timeout=timeout, return_when=futures.FIRST_COMPLETED)
        out = []
        for f in done:
            err = f.exception()
            if isinstance(err, BrokenProcessPool):
                raise WorkerError("a worker process died (killed, or out of memory); the "
                                  "finished stages are kept, rerun to continue") from None
            if err is not None:
                raise err
            out.append((f, f.result()))
        return out

    def cancel(self, handles: list[Any]) -> None:
        """Interrupted: stop the processes now (their stages resume from checkpoints)."""
        if handles and self.pool is not None:
            for proc in list(getattr(self.pool, "_processes", {}).values()):
                proc.terminate()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
