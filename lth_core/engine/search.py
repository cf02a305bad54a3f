"""Ticket search (Algorithm 1 of the paper): train, prune, rewind to the initial weights.

Works on any ``nn.Module`` factory. Run ``r`` of a search named ``name`` is fully determined
by ``(name, r, config)``: its initial weights, data order, augmentation and dropout. Every
finished stage is written to the results store at once, and training checkpoints after every
epoch, so an interrupted search resumes where it stopped and ends with the same numbers.

``run_search`` is the one loop (``_Driver``): it locks groups of runs, asks each group's
``RunState`` for the next stage, hands the jobs to an executor (this process, CPU workers or
Ray) that runs ``stage.compute_stage``, and writes what comes back with
``stage.write_stage``.
"""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from lth_core.analysis.metrics import SELECTED, run_summary
from lth_core.analysis.trajectory import arc_pairs
from lth_core.config import RESULTS, SearchConfig, setup_identity, to_dict
from lth_core.data import Dataset, normalize
from lth_core.engine.population import CHANNELS_LAST_POPULATION, auto_population
from lth_core.engine.ray_search import RayExecutor
from lth_core.engine.seeding import derive_seed
from lth_core.engine.stage import (
    RunState,
    StageContext,
    StageJob,
    StageResult,
    init_model,
    model_identity,
    write_stage,
)
from lth_core.engine.train import resolve_device
from lth_core.engine.workers import WorkerExecutor
from lth_core.provenance import code_patch, git_commit
from lth_core.pruning import prunable_weights
from lth_core.store import ResultsStore, check_name, load_results

HEARTBEAT_S = 60.0  # how often the driver refreshes the locks of the runs it holds
KEEP = ("none", "best", "all")  # run_search's keep_weights


@dataclass
class SearchReport:
    """What a call to ``ticket_search`` did, besides the records it wrote."""

    finished: list[int]
    skipped_locked: list[int]
    failed: dict[int, str]
    name: str = ""  # the search's name (its folder under the results path)
    results: Path | None = None  # the results path


def search_meta(name: str, cfg: SearchConfig, data: Dataset,
                model: nn.Module) -> dict[str, Any]:
    """What every run in one results folder must share (more stages may be added later):
    config, data and the model's structure (with its tensors' names and shapes)."""
    config = setup_identity(to_dict(cfg))  # without what no device's results depend on
    shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
    return {"name": name, "config": config, "data": data.identity(),
            "model": {**model_identity(model), "shapes": shapes}}


def check_model(model: nn.Module, data: Dataset) -> None:
    """Refuse, in one line, a model that cannot classify ``data``: its output on two test
    images must be (2, C) logits with C >= the data's classes (a 10-way head on 12 classes
    would fail inside the loss, after writing the search's setup)."""
    x = normalize(data.test.images[:2], data.mean, data.std)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(x)
    except Exception as err:  # any failure here is the model's, not the search's
        raise ValueError(f"the model cannot take the data's images {tuple(x.shape[1:])}: "
                         f"{type(err).__name__}: {' '.join(str(err).split())}") from None
    finally:
        model.train(was_training)
    if not isinstance(out, Tensor) or out.dim() != 2 or out.shape[0] != len(x):
        got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(f"the model's output must be (batch, classes) logits, got {got}")
    if out.shape[1] < len(data.classes):
        raise ValueError(f"the model has {out.shape[1]} outputs but the data "
                         f"{data.name!r} has {len(data.classes)} classes; build its head "
                         f"with {len(data.classes)} (e.g. build(arch, "
                         f"num_classes={len(data.classes)}))")


class Materialised:
    """A model factory whose lazy modules (``nn.LazyLinear``, ...) get their shapes from one
    forward pass of ``example`` in eval mode right after construction, so every run's
    theta_init is made (under its seed) before training. Pickles when ``model_fn`` does."""

    def __init__(self, model_fn: Callable[[], nn.Module], example: Tensor):
        self.model_fn, self.example = model_fn, example

    def __call__(self) -> nn.Module:
        model = self.model_fn()
        was_training = model.training
        model.eval()
        with torch.no_grad():
            model(self.example)
        return model.train(was_training)


def _has_lazy(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.lazy.LazyModuleMixin)
               and m.has_uninitialized_params() for m in model.modules())


def prepare_search(model_fn: Callable[[], nn.Module], data: Dataset, cfg: SearchConfig,
                   name: str | None, results: str | Path, device_type: str | None = None,
                   ) -> tuple[ResultsStore, str, Callable[[], nn.Module]]:
    """Everything a search checks before it trains: the config, the model against the data,
    the name (default: the model's class name) and the results folder's setup (recorded
    when new); the factory to search with (``Materialised`` when the model has lazy
    modules). Bad input raises ValueError (StoreError for the folder) before anything is
    written, except a new folder's ``search.json``."""
    cfg.validate()
    model = init_model(model_fn, 0)
    if not isinstance(model, nn.Module):
        raise ValueError(f"the model factory returned {type(model).__name__}, not an nn.Module")
    if _has_lazy(model):
        model_fn = Materialised(model_fn, normalize(data.test.images[:2], data.mean, data.std))
        try:
            model = init_model(model_fn, 0)
        except Exception as err:  # the model's failure, in one line
            raise ValueError(f"the model's lazy modules cannot take the data's images: "
                             f"{type(err).__name__}: {' '.join(str(err).split())}") from None
    name = check_name(type(model).__name__ if name is None else name)
    check_model(model, data)
    prunable_weights(model)  # a weight pruning cannot hold at zero: one line, now
    store = ResultsStore(results)
    store.check_search(name, search_meta(name, cfg, data, model), stages=cfg.stages,
                       device_type=device_type)
    return store, name, model_fn


def evaluation_pairs(data: Dataset, name: str, cfg: SearchConfig) -> Tensor:
    """The fixed arc pairs (test images) of an architecture: same for every run and stage."""
    images = normalize(data.test.images, data.mean, data.std)
    return arc_pairs(images, cfg.arc_pairs, seed=derive_seed(name, "arcs", cfg.seed))


def keep_selected(store: ResultsStore, name: str, run: int) -> None:
    """``keep_weights="best"`` once a run is done: keep the Best Sparse and Sparsest
    Matching tickets' weights, remove the other stages'."""
    row = run_summary(store.run_records(name, run)).iloc[0]
    stages = (row[f"{col}_stage"] for col in SELECTED.values())
    store.keep_tickets(name, run, {int(k) for k in stages if pd.notna(k)})  # none: no winner


class LocalExecutor:
    """Stages computed in this process, one group at a time (a run alone, or a population),
    checkpointed after every epoch.

    The executor interface (``workers.WorkerExecutor`` and ``ray_search.RayExecutor`` have
    it too): ``device_type`` (for the setup's identity), ``start`` (the group size),
    ``capacity`` (groups in flight), ``submit`` (a group's jobs of one stage: a handle),
    ``wait`` (finished handles with their results, or the exception that lost them),
    ``cancel``, ``close``; ``checkpoints``: whether an interrupted stage resumes mid-way.
    """

    checkpoints = True

    def __init__(self, device: torch.device, bar: tqdm | None = None):
        self.device, self.bar = device, bar
        self._done: dict[object, list[StageResult]] = {}

    def device_type(self) -> str:
        return self.device.type

    def start(self, ctx: StageContext, n_runs: int, population: int | None) -> int:
        self.ctx = ctx
        return population or auto_population(ctx.model_fn, ctx.cfg, self.device, n_runs)

    def capacity(self) -> int:
        return 1

    def submit(self, jobs: list[StageJob], population: bool) -> object:
        bar = self.bar
        label = ",".join(str(j.run) for j in jobs)

        def progress(info: dict[str, float], k: int = jobs[0].stage) -> None:
            if bar is not None:
                bar.set_postfix(runs=label, stage=k, epoch=info["epoch"],
                                val=f"{info['val_acc']:.2f}")

        handle = object()  # stages run here at once: the handle only pairs them in wait
        self._done[handle] = self.ctx.compute(jobs, self.device, population, progress=progress)
        return handle

    def wait(self, handles: list[Any], timeout: float) -> list[tuple[Any, Any]]:
        return [(h, self._done.pop(h)) for h in handles]

    def cancel(self, handles: list[Any]) -> None:
        pass

    def close(self) -> None:
        pass


@dataclass
class _Group:
    """Runs trained together (a population when there are several) and their locks."""

    states: list[RunState]
    locks: ExitStack
    population: bool
    current: list[RunState] = field(default_factory=list)  # runs of the stage in flight


class _Driver:
    """Algorithm 1's loop over runs: lock a group, send each stage its runs need to the
    executor, write what comes back, until every run is done. One loop for every engine."""

    def __init__(self, ctx: StageContext, executor: Any, size: int, bar: tqdm,
                 checkpoint: bool, keep_weights: str = "none"):
        self.ctx, self.executor, self.size, self.bar = ctx, executor, size, bar
        self.checkpoint, self.keep_weights = checkpoint, keep_weights
        self.report = SearchReport([], [], {}, ctx.name, ctx.store.root)
        self.inflight: dict[Any, _Group] = {}
        self.groups: list[_Group] = []

    def open_group(self, pending: deque[int]) -> None:
        c, locks, mine = self.ctx, ExitStack(), []
        while pending and len(mine) < self.size:
            r = pending.popleft()
            if locks.enter_context(c.store.lock(c.name, r)):
                mine.append(RunState(c.store, c.name, r, c.cfg, c.model_fn, self.checkpoint))
                self.bar.update(mine[-1].recorded)
            else:
                self.report.skipped_locked.append(r)
                self.bar.update(c.cfg.stages)
        group = _Group(mine, locks, population=len(mine) > 1)
        self.groups.append(group)
        self.submit(group)

    def submit(self, group: _Group) -> None:
        """Send the earliest stage any live run of the group needs, or close the group."""
        todo = [(st.pending(), st) for st in group.states]
        todo = [(k, st) for k, st in todo if k is not None]
        if not todo:
            self.report.finished += [st.run for st in group.states]
            if self.keep_weights == "best":
                for st in group.states:
                    keep_selected(self.ctx.store, self.ctx.name, st.run)
            group.locks.close()
            self.groups.remove(group)
            return
        k = min(k for k, _ in todo)
        group.current = [st for j, st in todo if j == k]
        keep = self.keep_weights != "none"
        handle = self.executor.submit([st.job(k, keep) for st in group.current],
                                      group.population)
        self.inflight[handle] = group

    def fail(self, group: _Group, st: RunState, message: str) -> None:
        self.report.failed[st.run] = message
        group.states.remove(st)
        tqdm.write(f"error: {message}; the other runs go on", file=sys.stderr)
        self.bar.update(self.ctx.cfg.stages - (st.pending() or 0))

    def receive(self, handle: Any, outcome: list[StageResult] | BaseException) -> None:
        group = self.inflight.pop(handle)
        if isinstance(outcome, BaseException):
            for st in list(group.current):
                self.fail(group, st, f"{self.ctx.name} run {st.run}: {outcome}")
        else:
            by_run = {st.run: st for st in group.current}
            for res in outcome:
                if res.error is not None:
                    self.fail(group, by_run[res.run], res.error)
                    continue
                write_stage(self.ctx.store, self.ctx.name, res)
                by_run[res.run].advance(res, self.checkpoint)
                self.bar.update(1)
                self.bar.set_postfix(run=res.run, stage=res.stage,
                                     val=f"{res.record['val_acc']:.2f}")
        self.submit(group)

    def run(self, run_ids: list[int]) -> SearchReport:
        pending = deque(run_ids)
        try:
            while pending or self.inflight:
                while pending and len(self.inflight) < self.executor.capacity():
                    self.open_group(pending)
                if not self.inflight:
                    continue
                for handle, outcome in self.executor.wait(list(self.inflight), HEARTBEAT_S):
                    self.receive(handle, outcome)
                for g in self.groups:
                    for st in g.states:
                        self.ctx.store.heartbeat(self.ctx.name, st.run)
        finally:  # interrupted or failed: stop what is in flight, release the locks
            self.executor.cancel(list(self.inflight))
            for g in self.groups:
                g.locks.close()
        self.report.finished = sorted(r for r in self.report.finished
                                      if r not in self.report.failed)
        return self.report


def run_search(
    model_fn: Callable[[], nn.Module],
    data: Dataset,
    cfg: SearchConfig | None = None,
    *,
    name: str | None = None,
    runs: int | Iterable[int] = 1,
    results: str | Path = RESULTS,
    device: str | torch.device = "auto",
    population: int | None = 1,
    workers: int | None = None,
    ray: str | None = None,
    keep_weights: str = "none",
    progress: bool = True,
) -> SearchReport:
    """Run (or resume) ticket search for ``runs`` of ``model_fn``; say what happened. The
    one entry point of every engine, chosen here alone:

    - in this process (default): ``population`` runs trained at once as one vectorised
      model (``None``: as many as the device holds, on a CPU one);
    - ``workers`` > 1: CPU processes of one torch thread, one run each (``model_fn`` must
      pickle: ``functools.partial(build, arch)``);
    - ``ray``: Ray tasks of one stage ("local" starts Ray here or joins ``RAY_ADDRESS``;
      else a cluster's address); ``device`` is the cluster's.

    ``keep_weights``: ``none`` (the protocol's: records and masks only), ``best`` (each
    finished run's Best Sparse and Sparsest Matching tickets' trained weights, chosen as
    Table 2 chooses), ``all`` (every stage's); ``lth_core.load_ticket`` loads them.

    ``name`` (default: the model's class name) names the search's folder and, with the
    run index, seeds each run. Runs held by another process (a live lock) are skipped; a run
    that diverges is reported and the others go on. Every finished stage is in the store.
    """
    cfg = cfg or SearchConfig()
    git_commit()  # read (and cached) now, while the checkout is the code this process loaded
    run_ids = list(range(runs)) if isinstance(runs, int) else list(runs)
    if not run_ids or min(run_ids) < 0:
        raise ValueError("runs must be >= 1")
    if population is not None and population < 1:
        raise ValueError(f"population must be >= 1, got {population}")
    if cfg.train.channels_last and population is not None and population > 1:
        raise ValueError(CHANNELS_LAST_POPULATION)  # before anything is written
    if keep_weights not in KEEP:
        raise ValueError(f"keep_weights must be one of {', '.join(KEEP)}, got {keep_weights!r}")
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    many = workers is not None and workers > 1
    if many and ray is not None:
        raise ValueError("--ray and --workers exclude each other: Ray already runs one task "
                         "per core")
    if many and population is not None and population > 1:
        raise ValueError("--workers and --population exclude each other: choose one")
    bar = tqdm(total=len(run_ids) * cfg.stages, desc=name or "search", disable=not progress,
               unit="stage", file=sys.stderr)
    executor: Any = None
    try:
        if ray is not None:
            executor = RayExecutor(ray, device)
        else:
            dev = resolve_device(device)
            if many and dev.type != "cpu":
                raise ValueError("--workers is for CPUs; on a GPU use --population")
            if many:
                executor = WorkerExecutor(workers, model_fn)
            else:
                executor = LocalExecutor(dev, bar)
        store, name, model_fn = prepare_search(model_fn, data, cfg, name, results,
                                               device_type=executor.device_type())
        store.write_code_patch(name, code_patch())  # the code of a dirty checkout
        bar.set_description(name)
        ctx = StageContext(model_fn, data, evaluation_pairs(data, name, cfg), cfg, name, store)
        size = executor.start(ctx, len(run_ids), population)
        report = _Driver(ctx, executor, size, bar, executor.checkpoints,
                         keep_weights).run(run_ids)
        if report.finished:
            store.declare_stages(name, cfg.stages)
        return report
    finally:
        bar.close()
        if executor is not None:
            executor.close()


def ticket_search(model_fn: Callable[[], nn.Module], data: Dataset,
                  cfg: SearchConfig | None = None, **options: Any) -> pd.DataFrame:
    """``run_search`` (with any of its options), then the search's records
    (``load_results``)."""
    report = run_search(model_fn, data, cfg, **options)
    df = load_results(report.results)
    return df[df["arch"] == report.name].reset_index(drop=True)
