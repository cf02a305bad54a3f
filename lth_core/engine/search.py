"""Ticket search (Algorithm 1 of the paper): train, prune, rewind to the initial weights.

Works on any ``nn.Module`` factory. Run ``r`` of a search named ``name`` is fully determined
by ``(name, r, config)``: its initial weights, data order, augmentation and dropout. Every
finished stage is written to the results store at once, and training checkpoints after every
epoch, so an interrupted search resumes where it stopped and ends with the same numbers.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from lth_core.analysis.trajectory import arc_pairs, hidden_trajectories, mean_trajectory_lengths
from lth_core.config import SearchConfig, to_dict
from lth_core.data import Dataset, normalize
from lth_core.engine.population import Member, Population, train_population_stage
from lth_core.engine.seeding import derive_seed
from lth_core.engine.train import (
    StageOutcome,
    TrainingDiverged,
    evaluate,
    resolve_device,
    train_stage,
)
from lth_core.provenance import code_patch, git_commit, provenance
from lth_core.pruning import PRUNERS, Masks, apply_masks, density, full_masks
from lth_core.store import ResultsStore, check_name, load_results


@dataclass
class SearchReport:
    """What a call to ``ticket_search`` did, besides the records it wrote."""

    finished: list[int]
    skipped_locked: list[int]
    failed: dict[int, str]
    name: str = ""  # the search's name (its folder under the results path)


def run_seed(name: str, run: int, cfg: SearchConfig) -> int:
    return derive_seed(name, run, cfg.seed)


def model_identity(model: nn.Module) -> dict[str, Any]:
    """What makes two models one model in a results folder: the class name and a sha256 of
    every parameter's and buffer's name, shape and dtype (records carry these two)."""
    h = hashlib.sha256(type(model).__name__.encode())
    for k, v in model.state_dict().items():
        h.update(f"\0{k}:{tuple(v.shape)}:{v.dtype}".encode())
    return {"class": type(model).__name__, "structure_sha256": h.hexdigest()}


def search_meta(name: str, cfg: SearchConfig, data: Dataset,
                model: nn.Module) -> dict[str, Any]:
    """What every run in one results folder must share (more stages may be added later):
    config, data and the model's structure (with its tensors' names and shapes)."""
    config = to_dict(cfg)
    config.pop("stages")
    config["train"].pop("cuda_graphs")  # how the engine runs, not what it computes
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


def prepare_search(model_fn: Callable[[], nn.Module], data: Dataset, cfg: SearchConfig,
                   name: str | None, results: str | Path) -> tuple[ResultsStore, str]:
    """Everything a search checks before it trains: the config, the model against the data,
    the name (default: the model's class name) and the results folder's setup (recorded
    when new). Bad input raises ValueError (StoreError for the folder) before anything is
    written, except a new folder's ``search.json``."""
    cfg.validate()
    model = init_model(model_fn, 0)
    if not isinstance(model, nn.Module):
        raise ValueError(f"the model factory returned {type(model).__name__}, not an nn.Module")
    name = check_name(type(model).__name__ if name is None else name)
    check_model(model, data)
    store = ResultsStore(results)
    store.check_search(name, search_meta(name, cfg, data, model), stages=cfg.stages)
    return store, name


def init_model(model_fn: Callable[[], nn.Module], seed: int) -> nn.Module:
    """Build the model with a seeded global RNG, leaving the caller's RNG state untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return model_fn()


def evaluation_pairs(data: Dataset, name: str, cfg: SearchConfig) -> Tensor:
    """The fixed arc pairs (test images) of an architecture: same for every run and stage."""
    images = normalize(data.test.images, data.mean, data.std)
    return arc_pairs(images, cfg.arc_pairs, seed=derive_seed(name, "arcs", cfg.seed))


def rewind(model: nn.Module, theta_init: dict[str, Tensor], masks: Masks) -> None:
    """Algorithm 1, line 6: theta_init with every mask so far applied (buffers reset too)."""
    model.load_state_dict(theta_init)
    apply_masks(model, masks)


def measure_stage(model: nn.Module, data: Dataset, pairs: Tensor, cfg: SearchConfig,
                  device: torch.device) -> dict[str, float]:
    """Validation and test accuracy and trajectory lengths of a trained stage."""
    amp = cfg.train.amp
    bs = cfg.train.eval_batch_size
    out = {"val_acc": evaluate(model, data.val, data, device, bs, amp),
           "test_acc": evaluate(model, data.test, data, device, bs, amp)}
    out.update(mean_trajectory_lengths(model, pairs.to(device), n_points=cfg.arc_points))
    return out


def stage_record(name: str, run: int, stage: int, masks: Masks, outcome: StageOutcome,
                 measured: dict[str, float], cfg: SearchConfig, data: Dataset,
                 device: torch.device, model: nn.Module) -> dict[str, Any]:
    """One stage's record: what the store, the metrics and a continuing search read."""
    alive = sum(int(m.sum()) for m in masks.values())
    return {
        "arch": name, "run": run, "stage": stage, "density": density(masks),
        "n_weights": alive, **measured,
        "best_val_acc_training": outcome.best_val_acc, "epochs": outcome.epochs,
        "best_epoch": outcome.best_epoch, "wall_time_s": outcome.train_seconds,
        "pruner": cfg.pruner, "history": outcome.history,
        "provenance": {**provenance(device), "data_name": data.name,
                       "data_checksum": data.checksum, "config": to_dict(cfg),
                       "model": model_identity(model)},
    }


class InitMismatch(ValueError):
    """A run's initial weights, regenerated from its seed, differ from the stored ones."""


def state_checksum(state: dict[str, Tensor]) -> str:
    """sha256 of a state dict's names and values (CPU, in name order)."""
    h = hashlib.sha256()
    for k in sorted(state):
        h.update(k.encode())
        h.update(state[k].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


class _Run:
    """One run's progress: initial weights, masks of the stages to train, resume state.

    Where it stands comes from its checkpoint when that is at least as far as the records,
    else from the records alone: stages 0..k-1 recorded and the mask stage k-1 produced
    (``mask-stage-{k-1}.npz``) continue at stage k, with theta_init regenerated from the
    seed and checked against ``init.json``.
    """

    def __init__(self, model_fn: Callable[[], nn.Module], name: str, run: int,
                 cfg: SearchConfig, store: ResultsStore):
        self.model_fn, self.name, self.run, self.cfg, self.store = model_fn, name, run, cfg, store
        self.seed = run_seed(name, run, cfg)
        self._theta: dict[str, Tensor] | None = None
        self.train_state: dict[str, Any] | None = None
        recorded = store.recorded_stages(name, run, cfg.stages)
        ckpt = store.load_checkpoint(name, run) if recorded < cfg.stages else None
        if ckpt is not None and ckpt["stage"] >= recorded:
            masks = ckpt["masks"]  # a list in checkpoints of earlier versions
            self.masks = dict(enumerate(masks)) if isinstance(masks, list) else dict(masks)
            self._theta, self.next_stage = ckpt["theta_init"], ckpt["stage"]
            self.train_state = ckpt["train_state"]
        else:
            self.next_stage, self.masks = self._from_records(recorded)

    def _from_records(self, recorded: int) -> tuple[int, dict[int, Masks]]:
        if recorded >= self.cfg.stages:
            return recorded, {}  # nothing to train
        k = recorded
        while k > 0:
            m = self.store.read_mask(self.name, self.run, k - 1)  # warns when unusable
            if m is not None:
                return k, {k: m}
            k -= 1  # recompute the stage whose mask is missing
        return 0, {0: full_masks(self.model_fn())}

    @property
    def theta_init(self) -> dict[str, Tensor]:
        if self._theta is None:
            model = init_model(self.model_fn, self.seed)
            self._theta = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        return self._theta

    def check_init(self) -> None:
        """Refuse to train from initial weights that differ from those the run started with."""
        digest = state_checksum(self.theta_init)
        stored = self.store.read_init(self.name, self.run)
        if stored is None:
            self.store.write_init(self.name, self.run, {
                "theta_init_sha256": digest, "seed": self.seed,
                "torch_version": torch.__version__})
        elif stored.get("theta_init_sha256") != digest:
            raise InitMismatch(
                f"{self.name} run {self.run}: the initial weights made from its seed here "
                f"(torch {torch.__version__}) differ from those it started with (torch "
                f"{stored.get('torch_version', '?')}); continue it with that torch version, "
                "or use another --results directory")

    def needs(self, k: int) -> bool:
        """Stage k must be (re)computed: not reached yet, or its record is missing/corrupt."""
        return k >= self.next_stage or self.store.read_record(self.name, self.run, k) is None

    def stage_seed(self, k: int) -> int:
        return derive_seed(self.seed, "stage", k)

    def rewound(self, k: int) -> dict[str, Tensor]:
        """Algorithm 1, line 6, as a state dict: theta_init masked by every mask so far."""
        if k not in self.masks:
            raise RuntimeError(f"{self.name} run {self.run}: the mask of stage {k} is not "
                               "stored; delete the run's later records to recompute it")
        self.check_init()
        state = dict(self.theta_init)
        for n, m in self.masks[k].items():
            state[n] = self.theta_init[n] * m
        return state

    def resume_state(self, k: int) -> dict[str, Any] | None:
        return self.train_state if k == self.next_stage else None

    def save(self, tstate: dict[str, Any] | None = None) -> None:
        self.store.save_checkpoint(self.name, self.run, {
            "theta_init": self.theta_init, "masks": self.masks, "stage": self.next_stage,
            "train_state": tstate})
        self.store.heartbeat(self.name, self.run)

    def finish(self, k: int, model: nn.Module, outcome: StageOutcome, data: Dataset,
               pairs: Tensor, device: torch.device) -> None:
        """Measure the trained stage, prune (line 5) if it is new, write mask and record."""
        model.load_state_dict(outcome.state)
        measured = measure_stage(model, data, pairs, self.cfg, device)
        new = None
        if k == self.next_stage:
            pruner = PRUNERS[self.cfg.pruner]
            new = {n: m.cpu() for n, m in pruner(model, self.cfg.prune_rate, self.masks[k],
                                                 seed=derive_seed(self.seed, "prune", k)).items()}
            self.store.write_mask(self.name, self.run, k, new)  # before the record: see needs
        self.store.write_record(stage_record(self.name, self.run, k, self.masks[k], outcome,
                                             measured, self.cfg, data, device, model))
        if self.run < self.cfg.hidden_runs:
            x0, x1 = pairs[0].to(device)
            self.store.write_hidden(self.name, self.run, k, hidden_trajectories(
                model, x0, x1, self.cfg.hidden_arc_points))
        if new is not None:
            # masks of every stage seen here are kept so that any can be recomputed later
            self.masks[k + 1] = new
            self.next_stage, self.train_state = k + 1, None
            self.save()


def _bar_progress(bar: tqdm | None, label: str, k: int) -> Callable[[dict[str, float]], None]:
    def progress(info: dict[str, float]) -> None:
        if bar is not None:
            bar.set_postfix(runs=label, stage=k, epoch=info["epoch"],
                            val=f"{info['val_acc']:.2f}")
    return progress


def _search_single(model_fn: Callable[[], nn.Module], data: Dataset, run: _Run,
                   device: torch.device, pairs: Tensor, bar: tqdm | None) -> None:
    """Compute every missing stage of one run, resuming from its checkpoint."""
    model = init_model(model_fn, run.seed).to(device)
    for k in range(run.cfg.stages):
        if run.needs(k):
            model.load_state_dict(run.rewound(k))
            on_epoch = (lambda st: run.save(st)) if k == run.next_stage else None
            try:
                outcome = train_stage(model, run.masks[k], data, run.cfg.train,
                                      seed=run.stage_seed(k), device=device,
                                      resume=run.resume_state(k), on_epoch=on_epoch,
                                      progress=_bar_progress(bar, str(run.run), k))
            except TrainingDiverged as err:
                raise TrainingDiverged(f"{run.name} run {run.run} stage {k}: {err}") from None
            run.finish(k, model, outcome, data, pairs, device)
        if bar is not None:
            bar.update(1)


def _search_population(model_fn: Callable[[], nn.Module], data: Dataset, runs: list[_Run],
                       device: torch.device, pairs: Tensor, bar: tqdm | None,
                       failed: dict[int, str]) -> None:
    """Stage by stage, train every run that needs the stage as one population."""
    model = init_model(model_fn, 0).to(device)
    live = list(runs)
    label = f"{runs[0].run}-{runs[-1].run}"
    for k in range(runs[0].cfg.stages):
        todo = [r for r in live if r.needs(k)]
        if todo:
            members = [Member(state=r.rewound(k), masks=r.masks[k], seed=r.stage_seed(k),
                              resume=r.resume_state(k)) for r in todo]

            def on_epoch(i: int, st: dict[str, Any], todo: list[_Run] = todo, k: int = k):
                if k == todo[i].next_stage:
                    todo[i].save(st)

            outcomes = train_population_stage(model_fn, members, data, runs[0].cfg.train,
                                              device=device, on_epoch=on_epoch,
                                              progress=_bar_progress(bar, label, k))
            for r, out in zip(todo, outcomes, strict=True):
                if isinstance(out, TrainingDiverged):
                    failed[r.run] = f"{r.name} run {r.run} stage {k}: {out}"
                    tqdm.write(f"error: {failed[r.run]}; the other runs go on", file=sys.stderr)
                    live.remove(r)
                else:
                    r.finish(k, model, out, data, pairs, device)
        if bar is not None:
            bar.update(len(live))


def auto_population(model_fn: Callable[[], nn.Module], cfg: SearchConfig,
                    device: torch.device, n_runs: int) -> int:
    """How many runs to train at once: on a GPU, as many as ~60% of free memory holds,
    measured from the peak memory of one training step at population sizes 1 and 2. On a CPU
    one: vmapped convolutions become grouped convolutions, whose CPU kernels are slower than
    the members' convolutions one by one (see BENCHMARKS.md)."""
    if device.type != "cuda":
        return 1
    peaks = []
    x = torch.zeros(cfg.train.batch_size, 3, 32, 32)
    for s in (1, 2):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        states = [init_model(model_fn, i).state_dict() for i in range(s)]
        pop = Population(model_fn, states, [None] * s, cfg.train, device)
        xs = x.to(device).expand(s, *x.shape).contiguous()
        pop.train_step(xs, torch.zeros(s, x.shape[0], dtype=torch.long, device=device), 0.0)
        peaks.append(torch.cuda.max_memory_allocated(device) - base)
        del pop, xs
    per_member = max(peaks[1] - peaks[0], 1)
    free, _ = torch.cuda.mem_get_info(device)
    return max(1, min(n_runs, 64, int(0.6 * free / per_member)))


def search_runs(
    model_fn: Callable[[], nn.Module],
    data: Dataset,
    cfg: SearchConfig | None = None,
    *,
    name: str | None = None,
    runs: int | Iterable[int] = 1,
    results: str | Path = "results",
    device: str | torch.device = "auto",
    population: int | None = 1,
    progress: bool = True,
) -> SearchReport:
    """Run (or resume) ticket search for ``runs`` of ``model_fn``; say what happened.

    ``name`` (default: the model's class name) names the search's folder and, with the
    run index, seeds each run. ``runs`` is a count (runs 0..n-1) or explicit run indices.
    ``population`` runs are trained at once by the vectorised engine (``None``: as many as
    the device holds). Runs
    held by another process (a live lock) are skipped; a run that diverges is reported and
    the others go on. Every finished stage is in the results store.
    """
    cfg = cfg or SearchConfig()
    git_commit()  # read (and cached) now, while the checkout is the code this process loaded
    dev = resolve_device(device)
    run_ids = list(range(runs)) if isinstance(runs, int) else list(runs)
    if not run_ids or min(run_ids) < 0:
        raise ValueError("runs must be >= 1")
    if population is not None and population < 1:
        raise ValueError(f"population must be >= 1, got {population}")
    store, name = prepare_search(model_fn, data, cfg, name, results)
    store.write_code_patch(name, code_patch())  # the code of a dirty checkout, recoverable
    pairs = evaluation_pairs(data, name, cfg)
    size = population or auto_population(model_fn, cfg, dev, len(run_ids))
    report = SearchReport([], [], {}, name)
    bar = tqdm(total=len(run_ids) * cfg.stages, desc=f"{name}", disable=not progress,
               unit="stage", file=sys.stderr)
    try:
        pending = list(run_ids)
        while pending:
            with ExitStack() as stack:  # lock one group at a time, so other processes share
                mine = []
                while pending and len(mine) < size:
                    r = pending.pop(0)
                    if stack.enter_context(store.lock(name, r)):
                        mine.append(r)
                    else:
                        report.skipped_locked.append(r)
                        bar.update(cfg.stages)
                if not mine:
                    continue
                group = [_Run(model_fn, name, r, cfg, store) for r in mine]
                if len(group) == 1:
                    try:
                        _search_single(model_fn, data, group[0], dev, pairs, bar)
                    except TrainingDiverged as err:
                        report.failed[group[0].run] = str(err)
                        tqdm.write(f"error: {err}; the other runs go on", file=sys.stderr)
                else:
                    _search_population(model_fn, data, group, dev, pairs, bar, report.failed)
                report.finished += [g.run for g in group if g.run not in report.failed]
        if report.finished:
            store.declare_stages(name, cfg.stages)
    finally:
        bar.close()
    return report


def ticket_search(
    model_fn: Callable[[], nn.Module],
    data: Dataset,
    cfg: SearchConfig | None = None,
    *,
    name: str | None = None,
    runs: int | Iterable[int] = 1,
    results: str | Path = "results",
    device: str | torch.device = "auto",
    population: int | None = 1,
    progress: bool = True,
) -> pd.DataFrame:
    """``search_runs``, then the records of ``name`` (``load_results`` of ``results``);
    ``name`` defaults to the model's class name."""
    report = search_runs(model_fn, data, cfg, name=name, runs=runs, results=results,
                         device=device, population=population, progress=progress)
    df = load_results(results)
    return df[df["arch"] == report.name].reset_index(drop=True)
