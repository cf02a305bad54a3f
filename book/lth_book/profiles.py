"""Experiment profiles of the book, and the one call its notebooks make to get results.

``smoke`` runs all seven architectures in seconds each on tiny synthetic data (tests),
``quick`` is a real but small-budget experiment sized for a 2-core CPU, ``paper`` is the
paper's full protocol (for GPUs). This module owns the profile names, the default profile,
each profile's results folder and the shared data path; ``book/build.py`` and the Makefile
ask it. ``ensure_results`` reads what a results folder holds and computes only what is
missing, through the resumable search, so any chapter runs alone and chapters share runs.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from lth_core.config import RESULTS, SearchConfig, default_train_config, to_dict
from lth_core.data import load_data
from lth_core.engine.search import run_search
from lth_core.engine.train import resolve_device
from lth_core.engine.workers import default_workers
from lth_core.models import ARCHITECTURES, build, by_size
from lth_core.store import ResultsStore, StoreError, load_results, setup_difference

from .paper import PAPER_PROTOCOL
from .sources import best_available

REPO_ROOT = Path(__file__).resolve().parents[2]
RESULTS_DIR = REPO_ROOT / RESULTS  # the repository's stored results
# The folder beside the checkout with the paper and the JPEG copy of CIFAR-10 (machines
# without internet)
SHARED = REPO_ROOT.parent / "shared"
SHARED_DATA = SHARED / "data" / "cifar10-jpeg.tar.gz"
DEFAULT_PROFILE = "quick"


@dataclass
class Profile:
    """How much to compute: which architectures, how many runs, how long each stage trains."""

    name: str
    archs: list[str]
    runs: int
    stages: int = SearchConfig.stages
    data: str = "real"  # "real": the JPEG copy beside the checkout if present, else cifar10
    train_overrides: dict[str, Any] = field(default_factory=dict)
    search_overrides: dict[str, Any] = field(default_factory=dict)
    baseline_archs: list[str] = field(default_factory=list)
    baseline_runs: int = 0
    results: str = RESULTS  # default results folder, relative to the repository
    workers: int | None = None  # CPU processes training runs (None: one per core)
    width_runs: int = 0  # runs per width the width chapter computes (0: it reads the stored)
    note: str = ""


PROFILES: dict[str, Profile] = {
    # every architecture, 2 runs x K = 2 of one epoch on 40 synthetic images: seconds each
    # (PNASNet and ResNet18 the slowest), in this process (starting worker processes for
    # every architecture would cost more than the runs); records stay out of results/
    "smoke": Profile(
        "smoke", list(ARCHITECTURES), runs=2, stages=2, data="synthetic:48:24",
        train_overrides={"max_epochs": 1, "patience": 1, "batch_size": 64},
        search_overrides={"arc_pairs": 1, "arc_points": 16, "hidden_arc_points": 8},
        baseline_archs=["lenet5"], baseline_runs=2, results="_build/results-smoke", workers=1,
        note="tiny synthetic data, one epoch per stage: tests the machinery, measures "
             "nothing"),
    "quick": Profile(
        "quick", ["lenet5"], runs=3, baseline_archs=["lenet5"], baseline_runs=3,
        note="real CIFAR-10, LeNet-5 only, 3 runs (and 3 each with magnitude and random "
             f"pruning): a small budget, far from the paper's {PAPER_PROTOCOL.runs} runs of "
             f"{len(ARCHITECTURES)} architectures"),
    "paper": Profile(
        "paper", list(ARCHITECTURES), runs=PAPER_PROTOCOL.runs, stages=PAPER_PROTOCOL.stages,
        baseline_archs=["lenet5", "pnasnet_a"], baseline_runs=10,
        width_runs=PAPER_PROTOCOL.runs,
        note=f"the paper's protocol: {len(ARCHITECTURES)} architectures x {PAPER_PROTOCOL.runs} "
             f"runs x K={PAPER_PROTOCOL.stages} (and the LeNet-5 width family with "
             f"{PAPER_PROTOCOL.runs} runs per width)"),
}


def get_profile(name: str) -> Profile:
    """The profile called ``name`` (ValueError naming the choices otherwise)."""
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose from: {', '.join(PROFILES)}")
    return PROFILES[name]


def default_results(profile: str | Profile) -> Path:
    """The results folder a profile uses by default (absolute)."""
    prof = get_profile(profile) if isinstance(profile, str) else profile
    path = Path(prof.results)
    return path if path.is_absolute() else REPO_ROOT / path


def resolve_data(spec: str | None, profile: Profile) -> str:
    """The data spec a profile uses: ``real`` means the JPEG copy when present, else cifar10."""
    spec = spec or profile.data
    if spec == "real":
        return str(SHARED_DATA) if SHARED_DATA.exists() else "cifar10"
    return spec


def search_config(profile: Profile, arch: str, pruner: str = "lamp",
                  prune_rate: float = SearchConfig.prune_rate,
                  stages: int | None = None) -> SearchConfig:
    return SearchConfig(stages=stages or profile.stages, prune_rate=prune_rate, pruner=pruner,
                        train=default_train_config(arch, **profile.train_overrides),
                        **profile.search_overrides)


def results_dir(root: str | os.PathLike, pruner: str = "lamp") -> Path:
    """LAMP results live in ``root``; baselines in ``root/<pruner>`` (kept apart on purpose)."""
    return Path(root) if pruner == "lamp" else Path(root) / pruner


def _complete(root: Path, arch: str, runs: int, stages: int) -> bool:
    store = ResultsStore(root)
    return all(store.recorded_stages(arch, r, stages) == stages for r in range(runs))


def _check_setup(root: Path, arch: str, cfg: SearchConfig) -> None:
    """Stored runs of another setup must not pass for this profile's (even when complete,
    so that no search, and no check of the store, would run)."""
    store = ResultsStore(root)
    stored = store.read_search(arch)
    if stored is None:
        return
    path = store.search_path(arch)
    diff = setup_difference(stored.get("config", {}), to_dict(cfg))
    if diff:
        raise StoreError(f"{path.parent} holds runs of another setup ({diff}); use another "
                         "results_dir")


def ensure_results(
    profile: str | Profile,
    *,
    results: str | os.PathLike = RESULTS,
    data: str | None = None,
    archs: list[str] | None = None,
    runs: int | None = None,
    stages: int | None = None,
    prune_rate: float = SearchConfig.prune_rate,
    pruner: str = "lamp",
    device: str = "auto",
    workers: int | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """Records of ``archs`` x ``runs`` x ``stages``; computes (resumably) whatever is missing.

    Data is loaded only when something has to be computed, so a book built from stored
    results needs no data set. On a CPU, missing runs are trained one torch thread per run,
    in ``workers`` processes (None: one per core), so the records do not depend on the
    machine's core count; on a GPU, as populations sized from its memory. ``workers`` None:
    the profile's (one per core unless it says otherwise).
    """
    prof = get_profile(profile) if isinstance(profile, str) else profile
    archs = archs or prof.archs
    runs = runs or prof.runs
    stages = stages or prof.stages
    root = results_dir(results, pruner)
    for arch in archs:
        _check_setup(root, arch, search_config(prof, arch, pruner, prune_rate, stages))
    missing = [a for a in archs if not _complete(root, a, runs, stages)]
    if missing:
        _compute(prof, missing, resolve_data(data, prof), root, runs, stages, prune_rate,
                 pruner, device, workers or prof.workers, progress)
    df = load_results(root)
    keep = df["arch"].isin(archs) & (df["run"] < runs) & (df["stage"] < stages)
    return df[keep].reset_index(drop=True)


def stored_search(root: str | os.PathLike, name: str, cfg: SearchConfig,
                  runs: int) -> pd.DataFrame | None:
    """The records of the search ``name`` under ``root`` (as ``ticket_search`` returns them)
    when its first ``runs`` runs hold every one of ``cfg.stages`` stages, read without
    loading any data, so a book built from stored results needs no data set; None when
    something is missing (``ticket_search`` then computes it, from the data). A folder of
    another setup is refused (``StoreError``), as the search would refuse it."""
    root = Path(root)
    if not (root / name).is_dir():
        return None
    _check_setup(root, name, cfg)
    if not _complete(root, name, runs, cfg.stages):
        return None
    df = load_results(root)
    return df[df["arch"] == name].reset_index(drop=True)


def results_to_show(
    profile: str | Profile,
    own: pd.DataFrame,
    *,
    results: str | os.PathLike = RESULTS,
    stages: int | None = None,
    prune_rate: float = SearchConfig.prune_rate,
    prefer: bool = True,
    search_root: str | os.PathLike = RESULTS,
):
    """What a chapter shows: the reader's LAMP run ``own`` (from ``ensure_results``), each
    architecture replaced by a larger stored set of the same setup under ``search_root``
    (relative: to the repository) when the project has one (``sources.best_available``).
    Returns a ``sources.Shown``."""
    search_root = Path(search_root)
    if not search_root.is_absolute():
        search_root = REPO_ROOT / search_root
    prof = get_profile(profile) if isinstance(profile, str) else profile
    stages = stages or prof.stages
    configs = {a: search_config(prof, a, "lamp", prune_rate, stages)
               for a in dict.fromkeys(own["arch"])}
    return best_available(own, configs, own_root=results, stages=stages,
                          search_root=search_root, prefer=prefer)


def _compute(prof: Profile, archs: list[str], spec: str, root: Path, runs: int, stages: int,
             prune_rate: float, pruner: str, device: str, workers: int | None,
             progress: bool) -> None:
    """The book's searches: on a CPU one run per core in one-thread workers (or one
    one-thread process), so the records do not depend on the core count; on a GPU
    populations as large as it holds."""
    dev = resolve_device(device)
    cpu = dev.type == "cpu"
    dataset = load_data(spec)
    threads = torch.get_num_threads()
    try:
        if cpu:
            torch.set_num_threads(1)  # as in the workers: same records on any core count
        for arch in archs:
            run_search(functools.partial(build, arch), dataset,
                       search_config(prof, arch, pruner, prune_rate, stages), name=arch,
                       runs=runs, results=root, device=dev, population=1 if cpu else None,
                       workers=(workers or default_workers(runs)) if cpu else None,
                       progress=progress)
    finally:
        torch.set_num_threads(threads)


def provenance_table(df: pd.DataFrame) -> pd.DataFrame:
    """Where each architecture's numbers came from, read from the records themselves
    (architectures by size, then pruners in the order met)."""
    rows = []
    order = {a: i for i, a in enumerate(by_size(df["arch"]))}
    groups = sorted(df.groupby(["arch", "pruner"], sort=False),
                    key=lambda kv: order[kv[0][0]])
    for (arch, pruner), g in groups:
        cfg = json.loads(g["config"].iloc[0])
        t = cfg["train"]
        rows.append({
            "architecture": arch,
            "runs": g["run"].nunique(),
            "stages (K)": int(g["stage"].max()) + 1,
            "data": f"{g['data_name'].iloc[0]} (sha256 {g['data_checksum'].iloc[0][:12]})",
            "hardware": "; ".join(sorted(g["device"].unique())),
            "torch": "; ".join(sorted(g["torch_version"].unique())),
            "code commit": "; ".join(sorted(c[:12] + ("+dirty" if c.endswith("+dirty") else "")
                                            for c in g["git_commit"].unique())),
            "pruner": pruner,
            "recipe": (f"SGD lr {t['lr']:g} (cosine), momentum {t['momentum']:g}, wd "
                       f"{t['weight_decay']:.0e}, batch {t['batch_size']}, <= "
                       f"{t['max_epochs']} epochs, patience {t['patience']}"),
            "training time (h)": round(g["wall_time_s"].sum() / 3600, 2),
        })
    return pd.DataFrame(rows)


