"""One stage of Algorithm 1, the step every engine executes: rewind, train, measure, prune.

``compute_stage`` takes ``StageJob``s (a run, a stage, the masks it trains) and returns
``StageResult``s, writing nothing: it regenerates each run's theta_init from its seed,
rewinds (line 6), trains the runs alone or as one population (lines 3-4), measures the
trained stage and prunes it (line 5). ``write_stage`` is the one writer of what a stage made
(the init check, mask, record, hidden arcs), and ``RunState`` the one reader of where a run
stands. The engines (one process, CPU workers, Ray) differ only in where ``compute_stage``
runs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from lth_core.analysis.trajectory import hidden_trajectories, mean_trajectory_lengths
from lth_core.config import SearchConfig, to_dict
from lth_core.data import Dataset
from lth_core.engine.population import Member, train_population_stage
from lth_core.engine.seeding import derive_seed, init_model
from lth_core.engine.train import StageOutcome, TrainingDiverged, evaluate, train_stage
from lth_core.provenance import provenance
from lth_core.pruning import PRUNERS, Masks, apply_masks, density, full_masks
from lth_core.store import ResultsStore

TrainState = dict[str, Any]  # an interrupted stage's training state (``train_stage``'s)


def run_seed(name: str, run: int, cfg: SearchConfig) -> int:
    return derive_seed(name, run, cfg.seed)


def state_checksum(state: dict[str, Tensor]) -> str:
    """sha256 of a state dict's names and values (CPU, in name order)."""
    h = hashlib.sha256()
    for k in sorted(state):
        h.update(k.encode())
        h.update(state[k].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def model_identity(model: nn.Module) -> dict[str, Any]:
    """What makes two models one model in a results folder: the class name and a sha256 of
    every parameter's and buffer's name, shape and dtype (records carry these two)."""
    h = hashlib.sha256(type(model).__name__.encode())
    for k, v in model.state_dict().items():
        h.update(f"\0{k}:{tuple(v.shape)}:{v.dtype}".encode())
    return {"class": type(model).__name__, "structure_sha256": h.hexdigest()}


def rewound(theta_init: dict[str, Tensor], masks: Masks) -> dict[str, Tensor]:
    """Algorithm 1, line 6, as a state dict: theta_init with the masks applied (buffers
    and unpruned tensors as they were at initialisation)."""
    state = dict(theta_init)
    for n, m in masks.items():
        state[n] = theta_init[n] * m
    return state


def trained_mask(store: ResultsStore, name: str, run: int, k: int,
                 model_fn: Callable[[], nn.Module]) -> Masks | None:
    """The mask stage k trains: every weight at stage 0, else what stage k-1's pruning
    produced (None, with a warning, when it is not stored or unreadable)."""
    return full_masks(model_fn()) if k == 0 else store.read_mask(name, run, k - 1)


class InitMismatch(ValueError):
    """A run's initial weights, regenerated from its seed, differ from the stored ones."""


@dataclass
class StageJob:
    """One run's stage to compute. ``new``: the stage has not been reached yet, so its
    pruning makes the next stage's mask (a stage recomputed for a lost record keeps the mask
    already stored); ``init_sha256``: what the regenerated theta_init must hash to (None:
    the run has not started); ``resume``: the training state of an interrupted stage;
    ``keep``: return the trained weights (a ticket to keep)."""

    run: int
    stage: int
    masks: Masks
    new: bool = True
    init_sha256: str | None = None
    resume: TrainState | None = None
    keep: bool = False


@dataclass
class StageResult:
    """What one run's stage made; nothing of it is written yet (``write_stage`` does)."""

    run: int
    stage: int
    init: dict[str, Any]  # init.json of the run: checksum, seed, torch version
    record: dict[str, Any] | None = None
    mask: Masks | None = None  # the mask pruning produced (stage + 1 trains it), when new
    hidden: list[tuple[str, np.ndarray]] | None = None
    error: str | None = None  # training diverged: the run stops, the others go on
    init_mismatch: bool = False
    code_patch: bytes | None = None  # the computing checkout's diff, when dirty
    weights: dict[str, Tensor] | None = None  # the trained stage's state_dict, when kept


def measure_stage(model: nn.Module, data: Dataset, pairs: Tensor, cfg: SearchConfig,
                  device: torch.device) -> dict[str, float]:
    """Validation and test accuracy and trajectory lengths of a trained stage."""
    bs = cfg.train.eval_batch_size
    out = {"val_acc": evaluate(model, data.val, data, device, bs),
           "test_acc": evaluate(model, data.test, data, device, bs)}
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


def compute_stage(model_fn: Callable[[], nn.Module], data: Dataset, pairs: Tensor,
                  cfg: SearchConfig, *, name: str, jobs: list[StageJob], device: torch.device,
                  population: bool,
                  on_epoch: Callable[[StageJob, TrainState], None] | None = None,
                  progress: Callable[[dict[str, float]], None] | None = None,
                  ) -> list[StageResult]:
    """Algorithm 1's lines 3-6 for one stage of each job's run; writes nothing.

    The jobs train as one population (``population``) or one by one alone; a job whose
    regenerated theta_init differs from ``init_sha256`` is not trained. ``on_epoch(job,
    state)`` after every epoch of a new stage (to checkpoint it).
    """
    results, members, ready = [], [], []
    for job in jobs:
        seed = run_seed(name, job.run, cfg)
        theta = {k: v.detach().cpu().clone() for k, v in init_model(model_fn, seed)
                 .state_dict().items()}
        res = StageResult(job.run, job.stage, {"theta_init_sha256": state_checksum(theta),
                                               "seed": seed, "torch_version": torch.__version__})
        results.append(res)
        if job.init_sha256 not in (None, res.init["theta_init_sha256"]):
            res.init_mismatch = True
            continue
        members.append(Member(state=rewound(theta, job.masks), masks=job.masks,
                              seed=derive_seed(seed, "stage", job.stage), resume=job.resume))
        ready.append((res, job, seed))
    if not ready:
        return results
    model = init_model(model_fn, 0).to(device)
    outcomes: list[StageOutcome | TrainingDiverged] = []
    if population:
        def member_epoch(i: int, st: TrainState) -> None:
            if on_epoch is not None and ready[i][1].new:
                on_epoch(ready[i][1], st)

        outcomes = train_population_stage(model_fn, members, data, cfg.train, device=device,
                                          on_epoch=member_epoch, progress=progress)
    else:
        for (_, job, _), mb in zip(ready, members, strict=True):
            model.load_state_dict(mb.state)
            apply_masks(model, mb.masks)  # a tied weight's other names: masked too
            hook = (lambda st, job=job: on_epoch(job, st)) if on_epoch and job.new else None
            try:
                outcomes.append(train_stage(model, mb.masks, data, cfg.train, seed=mb.seed,
                                            device=device, resume=mb.resume, on_epoch=hook,
                                            progress=progress))
            except TrainingDiverged as err:
                outcomes.append(err)
    for (res, job, seed), out in zip(ready, outcomes, strict=True):
        if isinstance(out, TrainingDiverged):
            res.error = f"{name} run {res.run} stage {res.stage}: {out}"
            continue
        model.load_state_dict(out.state)
        measured = measure_stage(model, data, pairs, cfg, device)
        if job.new:  # line 5
            res.mask = {n: m.cpu() for n, m in PRUNERS[cfg.pruner](
                model, cfg.prune_rate, job.masks,
                seed=derive_seed(seed, "prune", res.stage)).items()}
        res.record = stage_record(name, res.run, res.stage, job.masks, out, measured, cfg,
                                  data, device, model)
        if job.keep:
            res.weights = {k: v.detach().cpu().clone() for k, v in out.state.items()}
        if res.run < cfg.hidden_runs:
            x0, x1 = pairs[0].to(device)
            res.hidden = hidden_trajectories(model, x0, x1, cfg.hidden_arc_points)
    return results


def write_stage(store: ResultsStore, name: str, res: StageResult) -> None:
    """The one writer of a computed stage: refuse other initial weights, then init.json (the
    run's first stage), the mask before the record (a record means its mask is stored), the
    record, kept weights, hidden arcs. Raises InitMismatch."""
    stored = store.read_init(name, res.run)
    if res.init_mismatch or (stored is not None and stored.get("theta_init_sha256")
                             != res.init["theta_init_sha256"]):
        raise InitMismatch(
            f"{name} run {res.run}: the initial weights made from its seed (torch "
            f"{res.init['torch_version']}) differ from those it started with (torch "
            f"{(stored or {}).get('torch_version', '?')}); continue it with that torch "
            "version, or use another --results directory")
    if stored is None:
        store.write_init(name, res.run, res.init)
    store.write_code_patch(name, res.code_patch)
    if res.mask is not None:
        store.write_mask(name, res.run, res.stage, res.mask)
    store.write_record(res.record)
    if res.weights is not None:
        store.write_ticket(name, res.run, res.stage, res.weights)
    if res.hidden is not None:
        store.write_hidden(name, res.run, res.stage, res.hidden)
    store.heartbeat(name, res.run)


class RunState:
    """Where one run stands, read from the store once: from its checkpoint (``checkpoint``)
    when that is at least as far as the records, else from the records alone: stages 0..k-1
    recorded and the mask stage k-1 produced continue at stage k (a stage whose mask is lost
    is recomputed)."""

    def __init__(self, store: ResultsStore, name: str, run: int, cfg: SearchConfig,
                 model_fn: Callable[[], nn.Module], checkpoint: bool = True):
        self.store, self.name, self.run, self.cfg = store, name, run, cfg
        self.model_fn = model_fn
        self.train_state: TrainState | None = None
        self.masks: dict[int, Masks] = {}
        self.recorded = store.recorded_stages(name, run, cfg.stages)  # leading stages
        ckpt = (store.load_checkpoint(name, run) if checkpoint and self.recorded < cfg.stages
                else None)
        if ckpt is not None and ckpt["stage"] >= self.recorded:
            masks = ckpt["masks"]  # a list in checkpoints of earlier versions
            self.masks = dict(enumerate(masks)) if isinstance(masks, list) else dict(masks)
            self.next_stage, self.train_state = ckpt["stage"], ckpt["train_state"]
        else:
            self.next_stage = self.recorded
            while 0 < self.next_stage < cfg.stages and self._mask(self.next_stage) is None:
                self.next_stage -= 1  # recompute the stage whose mask is missing
        # the stages before next_stage that have a record (a checkpoint may be ahead of them)
        self.have = set(range(self.recorded)) | {
            k for k in range(self.recorded + 1, min(self.next_stage, cfg.stages))
            if store.read_record(name, run, k) is not None}
        init = store.read_init(name, run)
        self.init_sha256 = init.get("theta_init_sha256") if init else None

    def pending(self) -> int | None:
        """The first stage to (re)compute: not reached yet, or its record is missing."""
        for k in range(self.cfg.stages):
            if k >= self.next_stage or k not in self.have:
                return k
        return None

    def _mask(self, k: int) -> Masks | None:
        if k not in self.masks:
            m = trained_mask(self.store, self.name, self.run, k, self.model_fn)
            if m is None:
                return None
            self.masks[k] = m
        return self.masks[k]

    def job(self, k: int, keep: bool = False) -> StageJob:
        if self._mask(k) is None:
            raise RuntimeError(f"{self.name} run {self.run}: the mask of stage {k} is not "
                               "stored; delete the run's later records to recompute it")
        new = k == self.next_stage
        return StageJob(self.run, k, self.masks[k], new, self.init_sha256,
                        self.train_state if new else None, keep)

    def advance(self, res: StageResult, checkpoint: bool) -> None:
        """After ``write_stage``: the next stage trains the mask this one produced. With
        ``checkpoint`` the run's checkpoint says so too (the finished stage's last epoch
        must not be resumed for a record lost later)."""
        self.init_sha256 = res.init["theta_init_sha256"]
        self.have.add(res.stage)
        if res.mask is not None:
            self.masks[res.stage + 1] = res.mask
            self.next_stage, self.train_state = res.stage + 1, None
            if checkpoint and self.next_stage < self.cfg.stages:
                self.store.save_checkpoint(self.name, self.run, {
                    "stage": self.next_stage, "masks": {self.next_stage: res.mask},
                    "train_state": None})


@dataclass
class StageContext:
    """What every stage of one search shares, wherever it is computed."""

    model_fn: Callable[[], nn.Module]
    data: Dataset
    pairs: Tensor
    cfg: SearchConfig
    name: str
    store: ResultsStore

    def compute(self, jobs: list[StageJob], device: torch.device, population: bool,
                checkpoint: bool = True,
                progress: Callable[[dict[str, float]], None] | None = None,
                ) -> list[StageResult]:
        """``compute_stage`` for this search; with ``checkpoint`` every epoch of a new stage
        is saved in the store, from which ``RunState`` resumes it."""
        return compute_stage(self.model_fn, self.data, self.pairs, self.cfg, name=self.name,
                             jobs=jobs, device=device, population=population,
                             on_epoch=self._checkpoint if checkpoint else None,
                             progress=progress)

    def _checkpoint(self, job: StageJob, state: TrainState) -> None:
        self.store.save_checkpoint(self.name, job.run, {
            "stage": job.stage, "masks": {job.stage: job.masks}, "train_state": state})
        self.store.heartbeat(self.name, job.run)
