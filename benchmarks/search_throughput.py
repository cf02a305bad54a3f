"""Training throughput of ticket search: the loop a user would write vs our engine.

Ticket search trains many small runs, so what matters is images per second over all of
them. Three ways to train, side by side in one process (so they share the machine's load),
each for a fixed number of SGD steps on synthetic CIFAR-shaped data:

  (a) naive       one run at a time, as LAMP and OpenLTH train: a Dataset of PIL images,
                  per-image torchvision transforms, DataLoader workers, fp32
  (b) engine      one run: uint8 data on the device, bulk augmentation, bf16 on CUDA
  (c) population  S runs in one vectorised step (``lth_core.engine.population``)

Achieved FLOP/s (training = 3 x forward FLOPs) is set against a matmul peak measured in the
same process.

    python -m benchmarks.search_throughput [--archs lenet5,resnet18] [--device cuda] [--out f.json]

The last line printed is ``speedup_population_vs_naive_<arch>=X.XX``: (c)/(a) in images per
second, for lenet5 when it was benchmarked, else for the first arch.
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision.transforms as T
from PIL import Image
from torch import Tensor, nn
from torch.utils.data import DataLoader
from torch.utils.flop_counter import FlopCounterMode

from lth_core.config import TrainConfig
from lth_core.data import Dataset, Split, batches, load_data
from lth_core.engine.stage import init_model
from lth_core.engine.train import autocast, lr_at, make_optimizer, resolve_device
from lth_core.models import ARCHITECTURES, build
from lth_core.provenance import cpu_model

DATA_SPEC = "synthetic:5000:1000"
DEFAULT_ARCHS = "lenet5,resnet32,mobilenet_v1"
LR = 0.05
WAY_LABELS = {
    "naive": "(a) naive DataLoader",
    "engine": "(b) engine, 1 run",
    "population": "(c) engine, population",
}
Step = Callable[[int], Tensor]  # global step index -> detached loss (a scalar or (S,))


@dataclass
class Timing:
    """One way's timed steps; ``runs`` models trained per step (S for the population)."""

    way: str
    runs: int
    steps: int
    batch_size: int
    seconds: float
    final_loss: float

    @property
    def images_per_s(self) -> float:
        return self.steps * self.batch_size * self.runs / self.seconds

    @property
    def ms_per_step(self) -> float:
        return 1000.0 * self.seconds / self.steps


# ----------------------------------------------------------------------------- machine


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def machine_info(device: torch.device) -> dict[str, Any]:
    return {
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
    }


def matmul_flops(n: int, dtype: torch.dtype, device: torch.device,
                 min_seconds: float = 1.0) -> float:
    """FLOP/s of an n x n matmul repeated (doubling the count) until it runs ``min_seconds``."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    c = torch.mm(a, b)  # warm-up: library initialisation, allocation
    reps = 1
    while True:
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(reps):
            torch.mm(a, b, out=c)
        _sync(device)
        elapsed = time.perf_counter() - t0
        if elapsed >= min_seconds:
            return 2.0 * n**3 * reps / elapsed
        reps *= 2


def measure_peak(device: torch.device) -> dict[str, float]:
    """Matmul peak: bf16 8192^2 on CUDA (fp32 too, for reference), fp32 2048^2 on CPU."""
    if device.type == "cuda":
        return {"bf16": matmul_flops(8192, torch.bfloat16, device),
                "fp32": matmul_flops(8192, torch.float32, device)}
    return {"fp32": matmul_flops(2048, torch.float32, device)}


def train_flops_per_image(arch: str, device: torch.device, batch_size: int) -> float:
    """3 x the forward FLOPs per image, counted on one forward of a batch."""
    model = build(arch).to(device)
    x = torch.randn(batch_size, 3, 32, 32, device=device)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return 3.0 * counter.get_total_flops() / batch_size


# --------------------------------------------------------------------------------- ways


class PILImages(torch.utils.data.Dataset):
    """The usual torchvision-style dataset: one PIL image per item, transformed one by one."""

    def __init__(self, split: Split, transform: Callable) -> None:
        self.images = np.ascontiguousarray(split.images.permute(0, 2, 3, 1).numpy())  # HWC
        self.labels = split.labels.tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        return self.transform(Image.fromarray(self.images[i])), self.labels[i]


def _forever(epoch: Callable[[], Iterable]) -> Iterator:
    """Batches of ``epoch()`` after ``epoch()``, so any step count fits."""
    while True:
        yield from epoch()


def _timed(way: str, runs: int, step: Step, device: torch.device, batch_size: int,
           steps: int, warmup: int) -> Timing:
    """Warm up, then time ``steps`` steps; the device is synchronised only at both ends."""
    for i in range(warmup):
        step(i)
    _sync(device)
    t0 = time.perf_counter()
    for i in range(warmup, warmup + steps):
        loss = step(i)
    final_loss = loss.float().mean().item()
    _sync(device)
    return Timing(way, runs, steps, batch_size, time.perf_counter() - t0, final_loss)


def naive_step(arch: str, data: Dataset, device: torch.device, batch_size: int) -> Step:
    """(a): what LAMP and OpenLTH do, per-image PIL transforms in DataLoader workers, fp32."""
    transform = T.Compose([
        T.RandomCrop(32, padding=4),
        T.RandomHorizontalFlip(),
        T.ToTensor(),
        T.Normalize(data.mean, data.std),
    ])
    workers = max(0, min(4, (os.cpu_count() or 1) - 1))
    loader = DataLoader(PILImages(data.train, transform), batch_size=batch_size, shuffle=True,
                        num_workers=workers, pin_memory=device.type == "cuda", drop_last=True,
                        persistent_workers=workers > 0)
    stream = _forever(lambda: loader)
    model = init_model(functools.partial(build, arch), seed=0).to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9, weight_decay=5e-4)
    loss_fn = nn.CrossEntropyLoss()

    def step(_: int) -> Tensor:
        x, y = next(stream)
        x, y = x.to(device), y.to(device)
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        return loss.detach()

    return step


def engine_step(arch: str, data: Dataset, device: torch.device, batch_size: int) -> Step:
    """(b): one run as ``train_stage`` trains it (per-step LR, autocast, fused batches)."""
    cfg = TrainConfig(lr=LR, batch_size=batch_size)
    split = data.train.to(device)
    gen = torch.Generator().manual_seed(0)
    stream = _forever(lambda: batches(split, batch_size, mean=data.mean, std=data.std,
                                      device=device, shuffle=True, augment=True, generator=gen,
                                      drop_last=True))
    steps_per_epoch = len(split) // batch_size
    model = init_model(functools.partial(build, arch), seed=0).to(device).train()
    optimizer = make_optimizer(model, cfg)
    loss_fn = nn.CrossEntropyLoss()

    def step(i: int) -> Tensor:
        x, y = next(stream)
        for group in optimizer.param_groups:
            group["lr"] = lr_at(cfg, i, steps_per_epoch)
        with autocast(device, cfg.amp):
            loss = loss_fn(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.detach()

    return step


def population_api() -> tuple[type, Callable]:
    """``(Population, population_batches)``, or exit with a clear message when missing."""
    try:
        from lth_core.engine.population import Population, population_batches
    except ImportError as e:
        raise SystemExit(f"search_throughput: way (c) needs lth_core.engine.population with "
                         f"Population and population_batches, which is not available ({e})"
                         ) from None
    return Population, population_batches


def population_step(arch: str, data: Dataset, device: torch.device, batch_size: int,
                    size: int) -> Step:
    """(c): ``size`` runs, each with its own init and data order, in one vectorised step."""
    Population, population_batches = population_api()
    cfg = TrainConfig(lr=LR, batch_size=batch_size)
    model_fn = functools.partial(build, arch)
    states = [init_model(model_fn, seed=i).state_dict() for i in range(size)]
    pop = Population(model_fn, states, [None] * size, cfg, device)
    split = data.train.to(device)
    gens = [torch.Generator().manual_seed(i) for i in range(size)]
    # population_batches has no drop_last; skipping the short last batch keeps S*B per step.
    stream = (xy for xy in _forever(lambda: population_batches(
        split, batch_size, mean=data.mean, std=data.std, device=device, augment=True,
        generators=gens)) if xy[1].shape[1] == batch_size)
    steps_per_epoch = len(split) // batch_size

    def step(i: int) -> Tensor:
        x, y = next(stream)
        lrs = torch.full((size,), lr_at(cfg, i, steps_per_epoch))  # as the stage loop does
        return pop.train_step(x, y, lrs)

    return step


def _free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def time_population(arch: str, data: Dataset, device: torch.device, args: argparse.Namespace
                    ) -> Timing:
    """Way (c), halving S on CUDA out-of-memory until it fits."""
    size = args.population
    while True:
        try:  # no local keeps the failed population alive while the next one is built
            return _timed("population", size,
                          population_step(arch, data, device, args.batch_size, size),
                          device, args.batch_size, args.steps, args.warmup)
        except torch.cuda.OutOfMemoryError:
            if size == 1:
                raise
            print(f"{arch}: a population of {size} ran out of GPU memory; retrying with "
                  f"{size // 2}", flush=True)
        size //= 2
        _free(device)


def benchmark_arch(arch: str, data: Dataset, device: torch.device,
                   args: argparse.Namespace) -> list[Timing]:
    """The three ways for one architecture, each freed before the next starts."""
    timings = []
    for way, make in (("naive", naive_step), ("engine", engine_step)):
        step = make(arch, data, device, args.batch_size)
        timings.append(_timed(way, 1, step, device, args.batch_size, args.steps, args.warmup))
        del step
        _free(device)
    timings.append(time_population(arch, data, device, args))
    _free(device)
    return timings


# ---------------------------------------------------------------------------------- CLI


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.search_throughput",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--archs", default=DEFAULT_ARCHS,
                   help=f"comma-separated architectures (default {DEFAULT_ARCHS})")
    p.add_argument("--steps", type=int, help="timed steps (default 30 on CPU, 100 on CUDA)")
    p.add_argument("--warmup", type=int, help="untimed steps first (default 3 CPU, 10 CUDA)")
    p.add_argument("--population", type=int, help="runs S in way (c) (default 8 CPU, 50 CUDA)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--out", type=Path, help="also write every figure to this JSON file")
    args = p.parse_args(argv)
    args.archs = [a.strip() for a in args.archs.split(",") if a.strip()]
    unknown = [a for a in args.archs if a not in ARCHITECTURES]
    if not args.archs or unknown:
        p.error(f"unknown architecture(s) {unknown}; choose from: {', '.join(ARCHITECTURES)}")
    try:
        args.device = resolve_device(args.device)
    except ValueError as e:
        p.error(str(e))
    cuda = args.device.type == "cuda"
    args.steps = args.steps if args.steps is not None else (100 if cuda else 30)
    args.warmup = args.warmup if args.warmup is not None else (10 if cuda else 3)
    args.population = args.population if args.population is not None else (50 if cuda else 8)
    if args.steps < 1 or args.warmup < 0 or args.population < 1 or args.batch_size < 1:
        p.error("need --steps >= 1, --warmup >= 0, --population >= 1, --batch-size >= 1")
    return args


def _row(arch: str, t: Timing, flops: float, peak: float) -> str:
    achieved = flops * t.images_per_s
    return (f"{arch:<13} {WAY_LABELS[t.way]:<24} {t.runs:>4} {t.images_per_s:>10.1f} "
            f"{t.ms_per_step:>9.1f} {achieved / 1e9:>9.2f} {100 * achieved / peak:>6.2f}% "
            f"{t.final_loss:>7.3f}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, print the table and return every figure (as written by --out)."""
    args = parse_args(argv)
    device = args.device
    population_api()  # fail before spending minutes on (a) and (b)
    data = load_data(DATA_SPEC)
    machine = machine_info(device)
    peak = measure_peak(device)
    peak_ref = peak["bf16" if device.type == "cuda" else "fp32"]

    print(f"machine: {machine['cpu']} ({machine['cpu_count']} CPUs), torch "
          f"{machine['torch']} with {machine['torch_threads']} threads, device {device}"
          + (f" = {machine['gpu']}" if machine["gpu"] else ""))
    print("measured matmul peak: " + ", ".join(f"{k} {v / 1e9:.1f} GFLOP/s"
                                               for k, v in peak.items()))
    print(f"data {DATA_SPEC} ({len(data.train)} train images), batch {args.batch_size}, "
          f"{args.warmup} warm-up + {args.steps} timed steps, population S={args.population}")
    print(f"%peak = achieved / measured {'bf16' if device.type == 'cuda' else 'fp32'} peak; "
          "training FLOPs = 3 x forward FLOPs; loss = mean loss at the last step\n")
    print(f"{'arch':<13} {'way':<24} {'runs':>4} {'images/s':>10} {'ms/step':>9} "
          f"{'GFLOP/s':>9} {'%peak':>7} {'loss':>7}", flush=True)

    report: dict[str, Any] = {"machine": machine, "peak_flops": peak, "data": DATA_SPEC,
                              "settings": {k: args.__dict__[k] for k in
                                           ("steps", "warmup", "population", "batch_size")},
                              "archs": {}}
    for arch in args.archs:
        flops = train_flops_per_image(arch, device, args.batch_size)
        timings = benchmark_arch(arch, data, device, args)
        by_way = {t.way: t for t in timings}
        for t in timings:
            print(_row(arch, t, flops, peak_ref))
        naive, engine, pop = (by_way[w].images_per_s for w in WAY_LABELS)
        ratios = {"population_vs_naive": pop / naive, "engine_vs_naive": engine / naive,
                  "population_vs_engine": pop / engine}
        print(f"{'':<13} (c)/(a) {ratios['population_vs_naive']:.2f}x   "
              f"(b)/(a) {ratios['engine_vs_naive']:.2f}x   "
              f"per image (c)/(b) {ratios['population_vs_engine']:.2f}x", flush=True)
        report["archs"][arch] = {
            "train_flops_per_image": flops,
            "ways": {t.way: {**asdict(t), "images_per_s": t.images_per_s,
                             "ms_per_step": t.ms_per_step,
                             "achieved_flops": flops * t.images_per_s,
                             "fraction_of_peak": flops * t.images_per_s / peak_ref}
                     for t in timings},
            "ratios": ratios,
        }

    headline = "lenet5" if "lenet5" in args.archs else args.archs[0]
    speedup = report["archs"][headline]["ratios"]["population_vs_naive"]
    report["speedup_population_vs_naive"] = {"arch": headline, "value": speedup}
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2, default=str) + "\n")
        print(f"wrote {args.out}")
    print(f"speedup_population_vs_naive_{headline}={speedup:.2f}", flush=True)
    return report


if __name__ == "__main__":
    main()
