"""Ticket search on a Ray cluster: one Ray task per stage of a group of runs.

A task trains, measures and prunes one stage of one run (a CPU with one torch thread) or of
a population of runs (a GPU), and returns what it made: the stage's record, the mask its
pruning produced (bit-packed), hidden arcs for the first runs, and the checksum of the
initial weights. Tasks never touch the results folder; the driver writes their pieces
through ``ResultsStore`` in the order of a one-process search (init, mask, record, hidden),
so no shared filesystem is needed and the folder is the same as a one-process search's.

Each task gets what continuing needs: the mask of its stage, read from the store. The
initial weights are regenerated in the task from the run's seed and checked against
``init.json``. A worker that dies loses only its task's stage, which Ray retries; an
interrupted driver continues from the store when rerun. Without an address Ray starts on
this machine (or joins ``RAY_ADDRESS``); with one, the driver joins that cluster, whose nodes
need lth_core and its requirements installed (records name each worker's own commit). Only
registered architectures can be searched: a task rebuilds the model by name.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections import deque
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from lth_core.analysis.trajectory import hidden_trajectories
from lth_core.config import SearchConfig
from lth_core.data import Dataset, load_data
from lth_core.engine.population import Member, train_population_stage
from lth_core.engine.search import (
    InitMismatch,
    SearchReport,
    auto_population,
    evaluation_pairs,
    init_model,
    measure_stage,
    prepare_search,
    run_seed,
    stage_record,
    state_checksum,
)
from lth_core.engine.seeding import derive_seed
from lth_core.engine.train import StageOutcome, TrainingDiverged, train_stage
from lth_core.provenance import code_patch
from lth_core.pruning import PRUNERS, Masks, full_masks
from lth_core.store import ResultsStore

PackedMask = dict[str, Any]  # {"names": [...], "shapes": [...], "bits": [uint8 arrays]}
HEARTBEAT_S = 60.0  # how often the driver refreshes the locks of the runs it holds


def pack_mask(masks: Masks) -> PackedMask:
    """Masks as packed bits (the layout of ``mask-stage-K.npz``), small to send."""
    names = sorted(masks)
    return {"names": names, "shapes": [list(masks[n].shape) for n in names],
            "bits": [np.packbits(masks[n].cpu().numpy().astype(bool).ravel()) for n in names]}


def unpack_mask(packed: PackedMask) -> Masks:
    out = {}
    for n, shape, bits in zip(packed["names"], packed["shapes"], packed["bits"], strict=True):
        count = int(np.prod(shape))
        out[n] = torch.from_numpy(np.unpackbits(bits, count=count).astype(bool).reshape(shape))
    return out


@dataclass
class StageJob:
    """One run's stage to compute: the mask it trains (None: stage 0, every weight) and the
    checksum its regenerated initial weights must have (None: not recorded yet)."""

    run: int
    stage: int
    mask: PackedMask | None
    init_sha256: str | None


@dataclass
class StageResult:
    """What one run's stage produced; nothing of it is written yet."""

    run: int
    stage: int
    init: dict[str, Any]  # init.json of the run: checksum, seed, torch version
    record: dict[str, Any] | None = None
    mask: PackedMask | None = None  # the mask pruning produced (stage + 1 trains it)
    hidden: list[tuple[str, np.ndarray]] | None = None
    error: str | None = None  # training diverged
    init_mismatch: bool = False
    code_patch: bytes | None = None  # the worker's dirty checkout's diff (provenance)


def compute_stage(model_fn: Callable[[], nn.Module], data: Dataset, pairs: Tensor,
                  cfg: SearchConfig, *, name: str, jobs: list[StageJob], device: torch.device,
                  population: bool | None = None) -> list[StageResult]:
    """Train, measure and prune one stage of each job's run, writing nothing.

    The jobs train as one population (``population``; default: when there are several),
    else alone (``train_stage``); the numbers are those of ``search_runs`` with the same
    grouping (``_Run.finish`` without the writes).
    """
    results, members, ready = [], [], []
    for job in jobs:
        seed = run_seed(name, job.run, cfg)
        model = init_model(model_fn, seed)
        theta = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        res = StageResult(job.run, job.stage, {"theta_init_sha256": state_checksum(theta),
                                               "seed": seed, "torch_version": torch.__version__})
        results.append(res)
        if job.init_sha256 is not None and job.init_sha256 != res.init["theta_init_sha256"]:
            res.init_mismatch = True
            continue
        masks = unpack_mask(job.mask) if job.mask is not None else full_masks(model)
        state = dict(theta)  # Algorithm 1, line 6: theta_init with the masks so far
        for n, m in masks.items():
            state[n] = theta[n] * m
        members.append(Member(state=state, masks=masks,
                              seed=derive_seed(seed, "stage", job.stage)))
        ready.append((res, seed, masks))
    if not ready:
        return results
    outcomes: list[StageOutcome | TrainingDiverged]
    if population is None:
        population = len(jobs) > 1
    if not population:
        model = init_model(model_fn, ready[0][1]).to(device)
        model.load_state_dict(members[0].state)
        try:
            outcomes = [train_stage(model, members[0].masks, data, cfg.train,
                                    seed=members[0].seed, device=device)]
        except TrainingDiverged as err:
            outcomes = [err]
    else:
        outcomes = train_population_stage(model_fn, members, data, cfg.train, device=device)
        model = init_model(model_fn, 0).to(device)
    for (res, seed, masks), out in zip(ready, outcomes, strict=True):
        if isinstance(out, TrainingDiverged):
            res.error = f"{name} run {res.run} stage {res.stage}: {out}"
            continue
        model.load_state_dict(out.state)
        measured = measure_stage(model, data, pairs, cfg, device)
        new = PRUNERS[cfg.pruner](model, cfg.prune_rate, masks,
                                  seed=derive_seed(seed, "prune", res.stage))
        res.mask = pack_mask(new)
        res.record = stage_record(name, res.run, res.stage, masks, out, measured, cfg, data,
                                  device, model)
        if res.run < cfg.hidden_runs:
            x0, x1 = pairs[0].to(device)
            res.hidden = hidden_trajectories(model, x0, x1, cfg.hidden_arc_points)
    return results


def _stage_task(ctx: dict[str, Any], arch: str, cfg: SearchConfig, jobs: list[StageJob],
                use_gpu: bool, population: bool) -> list[StageResult]:
    """The Ray task: ``compute_stage`` on this worker's device; provenance names the node."""
    import ray

    from lth_core.models import build

    if use_gpu:
        device = torch.device("cuda")
    else:
        device = torch.device("cpu")
        torch.set_num_threads(1)
    out = compute_stage(lambda: build(arch), ctx["data"], ctx["pairs"], cfg, name=arch,
                        jobs=jobs, device=device, population=population)
    node = {"executor": "ray", "ray_node": ray.get_runtime_context().get_node_id(),
            "ray_node_ip": ray.util.get_node_ip_address()}
    for res in out:
        if res.record is not None:
            res.record["provenance"].update(node)
            res.code_patch = code_patch()
    return out


def _probe_population(arch: str, cfg: SearchConfig, n_runs: int) -> int:
    from lth_core.models import build

    return auto_population(lambda: build(arch), cfg, torch.device("cuda"), n_runs)


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


@dataclass
class _Group:
    """Runs trained together (a population when there are several) and their locks."""

    runs: list[int]
    locks: ExitStack
    live: list[int] = field(default_factory=list)
    current: list[int] = field(default_factory=list)  # runs of the task in flight


class _Driver:
    def __init__(self, ray: Any, arch: str, cfg: SearchConfig, store: ResultsStore,
                 task: Any, ctx: Any, use_gpu: bool, bar: tqdm):
        self.ray, self.arch, self.cfg, self.store = ray, arch, cfg, store
        self.task, self.ctx, self.use_gpu, self.bar = task, ctx, use_gpu, bar
        self.report = SearchReport([], [], {}, arch)
        self.inflight: dict[Any, _Group] = {}
        self.groups: list[_Group] = []

    def capacity(self) -> int:
        """Tasks the cluster runs at once now (it may grow or shrink)."""
        res = self.ray.cluster_resources()
        return max(1, int(res.get("GPU" if self.use_gpu else "CPU", 0)))

    def next_job(self, run: int) -> StageJob | None:
        """Where a run stands in the store: the first stage without a record whose mask is
        stored (a stage whose mask is missing is recomputed), as in ``search._Run``."""
        recorded = self.store.recorded_stages(self.arch, run, self.cfg.stages)
        if recorded >= self.cfg.stages:
            return None
        init = self.store.read_init(self.arch, run)
        sha = init.get("theta_init_sha256") if init else None
        k = recorded
        while k > 0:
            m = self.store.read_mask(self.arch, run, k - 1)  # warns when unusable
            if m is not None:
                return StageJob(run, k, pack_mask(m), sha)
            k -= 1
        return StageJob(run, 0, None, sha)

    def open_group(self, pending: deque[int], size: int) -> None:
        locks, mine = ExitStack(), []
        while pending and len(mine) < size:
            r = pending.popleft()
            if locks.enter_context(self.store.lock(self.arch, r)):
                mine.append(r)
                self.bar.update(self.store.recorded_stages(self.arch, r, self.cfg.stages))
            else:
                self.report.skipped_locked.append(r)
                self.bar.update(self.cfg.stages)
        group = _Group(mine, locks, live=list(mine))
        self.groups.append(group)
        self.submit(group)

    def submit(self, group: _Group) -> None:
        """Send the group's next stage (the earliest any live run needs), or close it."""
        jobs = [j for j in (self.next_job(r) for r in group.live) if j is not None]
        if not jobs:
            self.report.finished += [r for r in group.runs if r not in self.report.failed]
            group.locks.close()
            self.groups.remove(group)
            return
        k = min(j.stage for j in jobs)
        jobs = [j for j in jobs if j.stage == k]
        group.current = [j.run for j in jobs]
        ref = self.task.remote(self.ctx, self.arch, self.cfg, jobs, self.use_gpu,
                               len(group.runs) > 1)  # the engine of search_runs' groups
        self.inflight[ref] = group

    def fail(self, group: _Group, run: int, message: str) -> None:
        self.report.failed[run] = message
        group.live.remove(run)
        tqdm.write(f"error: {message}; the other runs go on", file=sys.stderr)
        self.bar.update(self.cfg.stages - self.store.recorded_stages(self.arch, run,
                                                                     self.cfg.stages))

    def receive(self, ref: Any) -> None:
        group = self.inflight.pop(ref)
        try:
            results: list[StageResult] = self.ray.get(ref)
        except self.ray.exceptions.RayError as err:  # retries used up, or not retryable
            for r in group.current:
                self.fail(group, r, f"{self.arch} run {r}: {_one_line(err)}")
            self.submit(group)
            return
        for res in results:
            if res.init_mismatch:
                stored = self.store.read_init(self.arch, res.run) or {}
                raise InitMismatch(
                    f"{self.arch} run {res.run}: the initial weights made from its seed on "
                    f"the Ray workers (torch {res.init['torch_version']}) differ from those it "
                    f"started with (torch {stored.get('torch_version', '?')}); continue it with "
                    "that torch version, or use another --results directory")
            if res.error is not None:
                self.fail(group, res.run, res.error)
                continue
            self.write(res)
        self.submit(group)

    def write(self, res: StageResult) -> None:
        """The stage's files in ``_Run.finish``'s order: a record only after its mask."""
        a, r, k = self.arch, res.run, res.stage
        if self.store.read_init(a, r) is None:
            self.store.write_init(a, r, res.init)
        self.store.write_code_patch(a, res.code_patch)
        self.store.write_mask(a, r, k, unpack_mask(res.mask))
        self.store.write_record(res.record)
        if res.hidden is not None:
            self.store.write_hidden(a, r, k, res.hidden)
        self.store.heartbeat(a, r)
        self.bar.update(1)
        self.bar.set_postfix(run=r, stage=k, val=f"{res.record['val_acc']:.2f}")

    def run(self, run_ids: list[int], size: int) -> SearchReport:
        pending = deque(run_ids)
        try:
            while pending or self.inflight:
                while pending and len(self.inflight) < self.capacity():
                    self.open_group(pending, size)
                if not self.inflight:
                    continue
                ready, _ = self.ray.wait(list(self.inflight), num_returns=1,
                                         timeout=HEARTBEAT_S)
                for ref in ready:
                    self.receive(ref)
                for g in self.groups:
                    for r in g.runs:
                        self.store.heartbeat(self.arch, r)
        finally:  # interrupted or failed: stop the tasks, release the locks
            for ref in self.inflight:
                try:
                    self.ray.cancel(ref, force=True)
                except Exception:  # already finished, or gone
                    pass
            for g in self.groups:
                g.locks.close()
        self.report.finished.sort()
        return self.report


def search_on_ray(
    arch: str,
    data_spec: str | Dataset,
    cfg: SearchConfig | None = None,
    *,
    runs: int | Iterable[int] = 1,
    results: str | os.PathLike = "results",
    address: str | None = None,
    population: int | None = None,
    device: str = "auto",
    max_retries: int = 3,
    progress: bool = False,
) -> SearchReport:
    """Run (or resume) ticket search for ``runs`` of ``arch`` as Ray tasks of one stage.

    ``device``: ``cuda`` trains populations of ``population`` runs (None: as many as a GPU
    holds, probed on one) with one GPU per task; ``cpu`` one run per task with one CPU and
    one torch thread; ``auto`` is ``cuda`` when the cluster has a GPU. A task whose worker
    dies is retried up to ``max_retries`` times; after that its runs are reported failed
    and the others go on. Ray started here is shut down at the end; an existing
    connection (``ray.init`` by the caller) is used and kept.
    """
    from lth_core.models import build

    cfg = cfg or SearchConfig()
    cfg.validate()
    build(arch)  # unknown architecture: ValueError before anything starts
    run_ids = list(range(runs)) if isinstance(runs, int) else list(runs)
    if not run_ids or min(run_ids) < 0:
        raise ValueError("runs must be >= 1")
    if population is not None and population < 1:
        raise ValueError(f"population must be >= 1, got {population}")
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda on Ray, got {device!r}")
    data = data_spec if isinstance(data_spec, Dataset) else load_data(data_spec)
    store, _ = prepare_search(lambda: build(arch), data, cfg, arch, results)
    ray = _import_ray()
    started = connect_ray(address)
    try:
        gpus = ray.cluster_resources().get("GPU", 0)
        if device == "cuda" and gpus < 1:
            raise ValueError("device 'cuda' requested but the Ray cluster has no GPU")
        use_gpu = device == "cuda" or (device == "auto" and gpus >= 1)
        opts = {"num_cpus": 1, "num_gpus": 1 if use_gpu else 0}
        size = population or 1
        if population is None and use_gpu:
            probe = ray.remote(_probe_population).options(**opts)
            size = ray.get(probe.remote(arch, cfg, len(run_ids)))
        task = ray.remote(_stage_task).options(**opts, max_retries=max_retries)
        ctx = ray.put({"data": data, "pairs": evaluation_pairs(data, arch, cfg)})
        bar = tqdm(total=len(run_ids) * cfg.stages, desc=f"{arch} (ray)", disable=not progress,
                   unit="stage", file=sys.stderr)
        try:
            report = _Driver(ray, arch, cfg, store, task, ctx, use_gpu, bar).run(run_ids, size)
            if report.finished:
                store.declare_stages(arch, cfg.stages)
            return report
        finally:
            bar.close()
    finally:
        if started:
            ray.shutdown()


def add_ray_argument(parser: argparse.ArgumentParser) -> None:
    """``--ray [ADDRESS]`` on ``lth search``."""
    parser.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                        help="train on Ray, one task per stage: alone, Ray starts on this "
                             "machine (or joins RAY_ADDRESS); with ADDRESS, join that cluster")


def run_ray_search(args: argparse.Namespace, cfg: SearchConfig, arch: str, *,
                   data: Dataset | None = None) -> int:
    """``lth search --ray``: search ``arch``; the number of failed runs (named on stderr).

    Raises ValueError (usage) and StoreError like ``search_runs``. Ray stays connected for
    the next architecture and stops when the process exits.
    """
    if args.workers and args.workers > 1:
        raise ValueError("--ray and --workers exclude each other: Ray already runs one "
                         "task per core")
    connect_ray(None if args.ray == "local" else args.ray)
    report = search_on_ray(arch, data if data is not None else args.data, cfg,
                           runs=range(args.first_run, args.first_run + args.runs),
                           results=args.results, population=args.population,
                           device=args.device, progress=not args.no_progress)
    if report.skipped_locked:
        print(f"{arch}: runs {report.skipped_locked} are being computed by another process",
              file=sys.stderr)
    return len(report.failed)
