"""A lent-GPU campaign: advance the paper profile's searches by whole stages within a budget.

    python -m benchmarks.gpu_campaign --budget-s 540 --data cifar10-jpeg.tar.gz \\
        --plan lenet5:50,lenet5-w0.25:50,pnasnet_a:16,resnet32:16 --out $OUT

Each item of ``--plan`` (``arch:runs``, in order) is searched stage by stage (K = 5, LAMP, the
architecture's default recipe), as one population on the GPU. Before each stage the campaign
estimates its time (from the previous stage of the same item, or for the first from a short
timed probe of the training step) and stops at that stage boundary when the stage would not
end inside the budget. It can be called again, on the same machine or a fresh one: the
search continues from the records committed under ``results/<gpu>/`` (and from checkpoints
where the machine still has them). With ``--out``, the records (no checkpoints, no locks)
are tarred into ``OUT/results-<gpu>.tgz`` and a summary is written to ``OUT/campaign.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import re
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import torch

from lth_core.config import SearchConfig, default_train_config
from lth_core.data import load_data
from lth_core.engine.population import Population, auto_population
from lth_core.engine.search import run_search
from lth_core.engine.stage import init_model
from lth_core.engine.train import resolve_device
from lth_core.models import build, is_buildable
from lth_core.store import ResultsStore

SAFETY = 1.15  # a stage is started only if its estimate times this fits the budget left


def gpu_folder_name(device: torch.device) -> str:
    """``h100``, ``h200``, ... from the device name; ``cpu`` on a CPU."""
    if device.type != "cuda":
        return "cpu"
    name = torch.cuda.get_device_name(device)
    found = re.search(r"\b([A-Z]\d{2,4})\b", name)
    return (found.group(1) if found else name.split()[-1]).lower()


def parse_plan(text: str) -> list[tuple[str, int]]:
    """``lenet5:50,resnet32:16`` -> [("lenet5", 50), ("resnet32", 16)]; errors in one line."""
    plan = []
    for item in filter(None, (t.strip() for t in text.split(","))):
        arch, _, runs = item.partition(":")
        if not is_buildable(arch):
            build(arch)  # raises the registry's one-line error
        if not runs.isdigit() or int(runs) < 1:
            raise ValueError(f"--plan item {item!r} needs a run count >= 1, e.g. {arch}:50")
        plan.append((arch, int(runs)))
    if not plan:
        raise ValueError("--plan is empty")
    return plan


def probe_stage_seconds(arch: str, cfg: SearchConfig, n_train: int, runs: int,
                        device: torch.device, steps: int = 20) -> float:
    """A first stage's time, from timed training steps of a population (upper bound: every
    member trains all ``max_epochs``; evaluation and checkpoints add about a quarter)."""
    model_fn = lambda: build(arch)  # noqa: E731
    size = min(runs, auto_population(model_fn, cfg, device, runs))
    states = [init_model(model_fn, i).state_dict() for i in range(size)]
    pop = Population(model_fn, states, [None] * size, cfg.train, device)
    b = cfg.train.batch_size
    x = torch.randn(size, b, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (size, b), device=device)
    for _ in range(Population.GRAPH_WARMUP + 2):
        pop.train_step(x, y, 0.01)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        pop.train_step(x, y, 0.01)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    per_step = (time.perf_counter() - t0) / steps
    del pop
    groups = math.ceil(runs / size)
    return 1.25 * per_step * math.ceil(n_train / b) * cfg.train.max_epochs * groups


def campaign(plan: list[tuple[str, int]], data_spec: str, results: Path, budget_s: float,
             device: torch.device, stages: int = 5, cuda_graphs: bool = True,
             log=print) -> dict[str, Any]:
    """Run the plan until done or until the next stage would overrun ``budget_s``."""
    start = time.monotonic()
    data = load_data(data_spec)
    log(f"data {data.name}: {len(data.train)} train images, loaded in "
        f"{time.monotonic() - start:.0f} s")
    done: list[dict[str, Any]] = []
    stopped = None
    for arch, runs in plan:
        cfg = SearchConfig(stages=stages,
                           train=default_train_config(arch, cuda_graphs=cuda_graphs))
        estimate = None
        for k in range(1, stages + 1):
            stored = _stages_done(results, arch, runs)
            if stored >= k:
                continue
            if estimate is None:
                estimate = probe_stage_seconds(arch, cfg, len(data.train), runs, device)
            left = budget_s - (time.monotonic() - start)
            if estimate * SAFETY > left:
                stopped = (f"{arch} stage {k - 1}: estimated {estimate:.0f} s, "
                           f"{left:.0f} s left")
                log(f"stop before {stopped}")
                break
            t0 = time.monotonic()
            report = run_search(lambda a=arch: build(a), data,
                                dataclasses.replace(cfg, stages=k), name=arch, runs=runs,
                                results=results, device=device, population=None,
                                progress=False)
            # the campaign's K is the search's, not the stage it has reached
            ResultsStore(results).declare_stages(arch, stages, add_missing=True)
            took = time.monotonic() - t0
            estimate = took
            done.append({"arch": arch, "runs": runs, "stage": k - 1, "seconds": round(took, 1),
                         "failed": report.failed})
            log(f"{arch}: stage {k - 1} of {runs} runs in {took:.0f} s"
                + (f"; failed: {report.failed}" if report.failed else ""))
        if stopped:
            break
    return {"device": str(device), "budget_s": budget_s,
            "seconds": round(time.monotonic() - start, 1), "stages": done, "stopped": stopped}


def _stages_done(results: Path, arch: str, runs: int) -> int:
    """How many leading stages every one of runs 0..runs-1 has a record for."""
    if not (results / arch).is_dir():
        return 0
    store = ResultsStore(results)
    return min(store.recorded_stages(arch, r, 10**6) for r in range(runs))


def pack_records(results: Path, tar_path: Path) -> int:
    """Tar the records under ``results`` (no checkpoints, locks or temporary files)."""
    files = [p for p in sorted(results.rglob("*")) if p.is_file() and "ckpt" not in p.parts
             and not p.name.startswith(".")]
    tar_path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tar_path, "w:gz") as tar:
        for p in files:
            tar.add(p, arcname=str(p.relative_to(results.parent)))
    return len(files)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu_campaign",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--budget-s", type=float, required=True, help="wall-clock budget, seconds")
    p.add_argument("--data", required=True, help="data set: archive path or cifar10")
    p.add_argument("--results", type=Path, default=Path("results"),
                   help="parent folder; records go to RESULTS/<gpu>/<arch>/, where the "
                        "committed records of earlier sessions are continued")
    p.add_argument("--plan", default="lenet5:50", help="arch:runs items, in order")
    p.add_argument("--stages", type=int, default=5, help="K (default 5)")
    p.add_argument("--device", default="auto", help="auto, cuda or cpu")
    p.add_argument("--out", type=Path, help="write results-<gpu>.tgz and campaign.json here")
    p.add_argument("--no-cuda-graphs", action="store_true",
                   help="train the population eagerly (TrainConfig.cuda_graphs off)")
    args = p.parse_args(argv)
    try:
        plan = parse_plan(args.plan)
        device = resolve_device(args.device)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.budget_s <= 0 or args.stages < 1:
        print("error: --budget-s must be > 0 and --stages >= 1", file=sys.stderr)
        return 2
    folder = args.results / gpu_folder_name(device)
    summary = campaign(plan, args.data, folder, args.budget_s, device, args.stages,
                       cuda_graphs=not args.no_cuda_graphs, log=lambda m: print(m, flush=True))
    if args.out is not None:
        n = pack_records(folder, args.out / f"results-{folder.name}.tgz")
        summary["records_packed"] = n
        (args.out / "campaign.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
