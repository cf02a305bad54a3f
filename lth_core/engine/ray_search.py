"""Stages computed as Ray tasks (``run_search(ray=ADDRESS)``), for a cluster.

A task runs ``stage.compute_stage`` for one stage of one run (a CPU with one torch thread)
or of a population of runs (a GPU) and returns what it made; tasks never touch the results
folder. The driver (``search._Driver``, the loop of every engine) writes their results
through ``stage.write_stage``, so no shared filesystem is needed and the folder is the same
as a one-process search's. Masks travel bit-packed (``store.pack_masks``). A worker that dies
loses only its task's stage, which Ray retries; after that its runs are reported failed and
the others go on; an interrupted driver continues from the store when rerun. Without an
address Ray starts on this machine (or joins ``RAY_ADDRESS``); with one, the driver joins
that cluster, whose nodes need lth_core and its requirements installed (records name each
worker's node and its own commit).
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from typing import Any

import torch

from lth_core.engine.population import auto_population
from lth_core.engine.stage import StageContext, StageJob, StageResult
from lth_core.provenance import code_patch
from lth_core.store import pack_masks, unpack_masks


def _stage_task(ctx: StageContext, jobs: list[StageJob], use_gpu: bool,
                population: bool) -> list[StageResult]:
    """The Ray task: ``compute_stage`` on this worker's device; provenance names the node."""
    import ray

    if use_gpu:
        device = torch.device("cuda")
    else:
        device = torch.device("cpu")
        torch.set_num_threads(1)
    jobs = [replace(j, masks=unpack_masks(j.masks)) for j in jobs]
    out = ctx.compute(jobs, device, population, checkpoint=False)
    node = {"executor": "ray", "ray_node": ray.get_runtime_context().get_node_id(),
            "ray_node_ip": ray.util.get_node_ip_address()}
    for res in out:
        if res.record is not None:
            res.record["provenance"].update(node)
            res.code_patch = code_patch()
        if res.mask is not None:
            res.mask = pack_masks(res.mask)
    return out


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ValueError("--ray needs the ray package: pip install ray==2.60.0") from None
    return ray


def connect_ray(address: str | None = None) -> bool:
    """Join the Ray cluster at ``address`` (else ``RAY_ADDRESS``), or start Ray on this
    machine; nothing when already connected. True when this call connected."""
    ray = _import_ray()
    if ray.is_initialized():
        return False
    target = address or os.environ.get("RAY_ADDRESS") or "local"
    if target == "local":
        ray.init(address="local", include_dashboard=False, logging_level=logging.WARNING)
    else:
        ray.init(address=target, logging_level=logging.WARNING)
    return True


def _one_line(err: BaseException) -> str:
    cause = getattr(err, "cause", None)
    if isinstance(cause, BaseException):
        err = cause
    lines = [ln for ln in str(err).splitlines() if ln.strip()]
    return f"{type(err).__name__}: {lines[0] if lines else ''}".rstrip(": ")


class RayExecutor:
    """Ray tasks of one stage (the interface of ``search.LocalExecutor``). ``device``:
    ``cuda`` trains populations with one GPU per task; ``cpu`` one run per task with one CPU
    and one torch thread; ``auto`` is ``cuda`` when the cluster has a GPU. Ray started here
    is shut down at ``close``; a connection made by the caller is kept."""

    checkpoints = False  # tasks write nothing: a stage interrupted mid-way restarts

    MAX_RETRIES = 3  # of a task whose worker died

    def __init__(self, address: str, device: Any = "auto"):
        device = str(device)
        if device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu or cuda on Ray, got {device!r}")
        self.ray = _import_ray()
        self.started = connect_ray(None if address == "local" else address)
        gpus = self.ray.cluster_resources().get("GPU", 0)
        if device == "cuda" and gpus < 1:
            self.close()
            raise ValueError("device 'cuda' requested but the Ray cluster has no GPU")
        self.use_gpu = device == "cuda" or (device == "auto" and gpus >= 1)
        self.opts = {"num_cpus": 1, "num_gpus": 1 if self.use_gpu else 0}

    def device_type(self) -> str:
        return "cuda" if self.use_gpu else "cpu"

    def start(self, ctx: Any, n_runs: int, population: int | None) -> int:
        ray = self.ray
        self.task = ray.remote(_stage_task).options(**self.opts, max_retries=self.MAX_RETRIES)
        self.ctx = ray.put(ctx)
        if population is None and self.use_gpu:
            probe = ray.remote(auto_population).options(**self.opts)
            return ray.get(probe.remote(ctx.model_fn, ctx.cfg, torch.device("cuda"), n_runs))
        return population or 1

    def capacity(self) -> int:
        """Tasks the cluster runs at once now (it may grow or shrink)."""
        res = self.ray.cluster_resources()
        return max(1, int(res.get("GPU" if self.use_gpu else "CPU", 0)))

    def submit(self, jobs: list[StageJob], population: bool) -> Any:
        packed = [replace(j, masks=pack_masks(j.masks)) for j in jobs]
        return self.task.remote(self.ctx, packed, self.use_gpu, population)

    def wait(self, handles: list[Any], timeout: float) -> list[tuple[Any, Any]]:
        ready, _ = self.ray.wait(handles, num_returns=1, timeout=timeout)
        out = []
        for ref in ready:
            try:
                results = self.ray.get(ref)
            except self.ray.exceptions.RayError as err:  # retries used up, or not retryable
                out.append((ref, RuntimeError(_one_line(err))))
                continue
            for res in results:
                if res.mask is not None:
                    res.mask = unpack_masks(res.mask)
            out.append((ref, results))
        return out

    def cancel(self, handles: list[Any]) -> None:
        for ref in handles:
            try:
                self.ray.cancel(ref, force=True)
            except Exception:  # already finished, or gone
                pass

    def close(self) -> None:
        if self.started:
            self.ray.shutdown()
            self.started = False
