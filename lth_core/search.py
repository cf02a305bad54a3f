"""Ticket search (Algorithm 1 of the paper): train, prune, rewind to the initial weights.

Works on any ``nn.Module`` factory. Run ``r`` of a search named ``name`` is fully determined
by ``(name, r, config)``: its initial weights, data order, augmentation and dropout. Every
finished stage is written to the results store at once, and training checkpoints after every
epoch, so an interrupted search resumes where it stopped and ends with the same numbers.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from .config import SearchConfig, to_dict
from .data import Dataset, normalize
from .lamp import PRUNERS, Masks, apply_masks, density, full_masks
from .provenance import provenance
from .seeding import derive_seed
from .store import ResultsStore, load_results
from .train import StageOutcome, TrainingDiverged, evaluate, resolve_device, train_stage
from .trajectory import arc_pairs, hidden_trajectories, mean_trajectory_lengths


@dataclass
class SearchReport:
    """What a call to ``ticket_search`` did, besides the records it wrote."""

    finished: list[int]
    skipped_locked: list[int]
    failed: dict[int, str]


def run_seed(name: str, run: int, cfg: SearchConfig) -> int:
    return derive_seed(name, run, cfg.seed)


def search_meta(name: str, cfg: SearchConfig, data: Dataset) -> dict[str, Any]:
    """What every run in one results folder must share (more stages may be added later)."""
    config = to_dict(cfg)
    config.pop("stages")
    return {"name": name, "config": config, "data": data.identity()}


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
                 device: torch.device) -> dict[str, Any]:
    alive = sum(int(m.sum()) for m in masks.values())
    return {
        "arch": name, "run": run, "stage": stage, "density": density(masks),
        "n_weights": alive, **measured,
        "best_val_acc_training": outcome.best_val_acc, "epochs": outcome.epochs,
        "best_epoch": outcome.best_epoch, "wall_time_s": outcome.train_seconds,
        "pruner": cfg.pruner, "history": outcome.history,
        "provenance": {**provenance(device), "data_name": data.name,
                       "data_checksum": data.checksum, "config": to_dict(cfg)},
    }


def _search_one(model_fn: Callable[[], nn.Module], data: Dataset, cfg: SearchConfig,
                name: str, run: int, store: ResultsStore, device: torch.device,
                pairs: Tensor, bar: tqdm | None) -> None:
    """Compute every missing stage of one run, resuming from its checkpoint."""
    seed = run_seed(name, run, cfg)
    model = init_model(model_fn, seed).to(device)
    ckpt = store.load_checkpoint(name, run)
    if ckpt is not None:
        theta_init, mask_hist = ckpt["theta_init"], ckpt["masks"]
        next_stage, train_state = ckpt["stage"], ckpt["train_state"]
    else:
        theta_init = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        mask_hist, next_stage, train_state = [full_masks(model)], 0, None

    def save(stage: int, tstate: dict[str, Any] | None) -> None:
        store.save_checkpoint(name, run, {"theta_init": theta_init, "masks": mask_hist,
                                          "stage": stage, "train_state": tstate})
        store.heartbeat(name, run)

    for k in range(cfg.stages):
        if store.read_record(name, run, k) is not None and k < next_stage:
            if bar is not None:
                bar.update(1)
            continue
        if k > next_stage:  # cannot happen: stages are computed in order
            raise RuntimeError(f"{name} run {run}: checkpoint at stage {next_stage}, need {k}")
        rewind(model, theta_init, mask_hist[k])
        resuming = train_state if k == next_stage else None

        def progress(info: dict[str, float], k: int = k) -> None:
            if bar is not None:
                bar.set_postfix(run=run, stage=k, epoch=info["epoch"],
                                val=f"{info['val_acc']:.2f}")

        on_epoch = (lambda st, k=k: save(k, st)) if k == next_stage else None
        try:
            outcome = train_stage(model, mask_hist[k], data, cfg.train,
                                  seed=derive_seed(seed, "stage", k), device=device,
                                  resume=resuming, on_epoch=on_epoch, progress=progress)
        except TrainingDiverged as err:
            raise TrainingDiverged(f"{name} run {run} stage {k}: {err}") from None
        model.load_state_dict(outcome.state)
        measured = measure_stage(model, data, pairs, cfg, device)
        store.write_record(stage_record(name, run, k, mask_hist[k], outcome, measured, cfg,
                                        data, device))
        if run < cfg.hidden_runs:
            x0, x1 = pairs[0].to(device)
            store.write_hidden(name, run, k, hidden_trajectories(model, x0, x1,
                                                                 cfg.hidden_arc_points))
        if k == next_stage:
            # Prune (line 5); masks for every stage are kept so any stage can be recomputed.
            pruner = PRUNERS[cfg.pruner]
            new = pruner(model, cfg.prune_rate, mask_hist[k], seed=derive_seed(seed, "prune", k))
            mask_hist = mask_hist[: k + 1] + [{n: m.cpu() for n, m in new.items()}]
            next_stage, train_state = k + 1, None
            save(next_stage, None)
        if bar is not None:
            bar.update(1)


def ticket_search(
    model_fn: Callable[[], nn.Module],
    data: Dataset,
    cfg: SearchConfig | None = None,
    *,
    name: str = "model",
    runs: int | Iterable[int] = 1,
    results: str | Path = "results",
    device: str | torch.device = "auto",
    progress: bool = True,
) -> pd.DataFrame:
    """Run (or resume) ticket search for ``runs`` of ``model_fn`` and return its records.

    ``runs`` is a count (runs 0..n-1) or explicit run indices. Runs held by another process
    (a live lock) are skipped; a run that diverges is reported and the others go on.
    Returns ``load_results(results)`` restricted to ``name``.
    """
    cfg = cfg or SearchConfig()
    cfg.validate()
    dev = resolve_device(device)
    run_ids = list(range(runs)) if isinstance(runs, int) else list(runs)
    if not run_ids or min(run_ids) < 0:
        raise ValueError("runs must be >= 1")
    store = ResultsStore(results)
    store.check_search(name, search_meta(name, cfg, data))
    pairs = evaluation_pairs(data, name, cfg)
    report = SearchReport([], [], {})
    bar = tqdm(total=len(run_ids) * cfg.stages, desc=f"{name}", disable=not progress,
               unit="stage", file=sys.stderr)
    try:
        for r in run_ids:
            with store.lock(name, r) as held:
                if not held:
                    report.skipped_locked.append(r)
                    bar.update(cfg.stages)
                    continue
                t0 = time.perf_counter()
                try:
                    _search_one(model_fn, data, cfg, name, r, store, dev, pairs, bar)
                    report.finished.append(r)
                except TrainingDiverged as err:
                    report.failed[r] = str(err)
                    tqdm.write(f"error: {err}; the other runs go on", file=sys.stderr)
                del t0
    finally:
        bar.close()
    ticket_search.last_report = report  # type: ignore[attr-defined]
    df = load_results(results)
    return df[df["arch"] == name].reset_index(drop=True)
