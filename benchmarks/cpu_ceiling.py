"""How fast can LeNet-5 ticket search train on this CPU at all? A ceiling for the population.

The population issue asks, on 2 CPU cores, for a LeNet-5 population at least 4x the naive
DataLoader loop and per image no slower than one run. This measures, with one torch thread
(the fair setting: one process per core), for batch 128:

  one run           a full SGD step of one LeNet-5 (forward, backward, optimiser)
  convs only        forward + backward of its two convolutions alone: a ceiling for any
                    way of training it, since every way has to do these
  population        S runs in one vmapped step (``lth_core.engine.population``), the member convs
                    becoming one grouped convolution
  population, NHWC  the same with the input laid out channels-last, which PyTorch's CPU
                    (oneDNN) grouped convolutions prefer
  one run, compiled with ``--compile``: the one-run step through ``torch.compile``
                    (inductor; its ~1 min of compilation is not timed)

Images per second count every member's images; "x 2 cores" is the ceiling with one process
per core and perfect scaling.

    python -m benchmarks.cpu_ceiling [--population 8] [--steps 20] [--compile] [--out f.json]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from lth_core.config import TrainConfig
from lth_core.engine.population import Population
from lth_core.models import build
from lth_core.provenance import cpu_model

BATCH = 128


def _rate(step: Callable[[], object], images: int, steps: int) -> float:
    for _ in range(3):
        step()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    return images * steps / (time.perf_counter() - t)


def measure(population: int, steps: int, compile: bool = False) -> dict[str, float]:
    torch.manual_seed(0)
    s = population
    x = torch.randn(s, BATCH, 3, 32, 32)
    y = torch.randint(0, 10, (s, BATCH))

    model = build("lenet5")
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)

    def one_run(net: torch.nn.Module = model) -> None:
        opt.zero_grad()
        F.cross_entropy(net(x[0]), y[0]).backward()
        opt.step()

    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    inputs = [x[0], torch.randn(BATCH, convs[1].in_channels, 14, 14)]

    def convs_only() -> None:
        for conv, inp in zip(convs, inputs, strict=True):
            conv(inp.requires_grad_(conv is not convs[0])).sum().backward()

    states = [build("lenet5").state_dict() for _ in range(s)]
    pop = Population(lambda: build("lenet5"), states, [None] * s, TrainConfig(), "cpu")
    nhwc = x.permute(1, 3, 4, 0, 2).contiguous().permute(3, 0, 4, 1, 2)  # memory (B,H,W,S,C)
    extra = {}
    if compile:
        compiled = torch.compile(model)
        extra["one_run_compiled"] = _rate(lambda: one_run(compiled), BATCH, steps * s)
    return {
        **extra,
        "one_run": _rate(one_run, BATCH, steps * s),
        "convs_only": _rate(convs_only, BATCH, steps * s),
        "population": _rate(lambda: pop.train_step(x, y, 0.05), s * BATCH, steps),
        "population_nhwc": _rate(lambda: pop.train_step(nhwc, y, 0.05), s * BATCH, steps),
    }


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--population", type=int, default=8)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--compile", action="store_true", help="also time torch.compile")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rates = measure(args.population, args.steps, args.compile)
    finally:
        torch.set_num_threads(threads)
    print(f"machine: {cpu_model()}, 1 torch thread, torch {torch.__version__}")
    for k, v in rates.items():
        print(f"{k:>16}: {v:9,.0f} img/s   (x 2 cores: {2 * v:9,.0f})")
    print(f"population per image vs one run: {rates['population'] / rates['one_run']:.2f}x "
          f"(NHWC {rates['population_nhwc'] / rates['one_run']:.2f}x)")
    out = {"machine": cpu_model(), "torch": torch.__version__, "threads": 1,
           "population": args.population, "batch": BATCH, "img_per_s": rates}
    if args.out:
        with open(args.out, "w") as f:
            json.dump(out, f, indent=1)
    return out


if __name__ == "__main__":
    main()
