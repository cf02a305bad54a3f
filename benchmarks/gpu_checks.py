"""Checks that need a CUDA device: population vs one-by-one on the GPU, CPU vs GPU data path,
and the population size ``auto_population`` picks for each architecture.

Run: ``python -m benchmarks.gpu_checks`` (prints one line per check; exits 1 on a failure).
"""

from __future__ import annotations

import sys

import torch

from lth_core.config import SearchConfig, TrainConfig, default_train_config
from lth_core.data import batches, load_data
from lth_core.engine.population import Member, Population, auto_population, train_population_stage
from lth_core.engine.stage import init_model
from lth_core.engine.train import train_stage
from lth_core.models import ARCHITECTURES, build


def main() -> int:
    if not torch.cuda.is_available():
        print("no CUDA device")
        return 1
    dev = torch.device("cuda")
    data = load_data("synthetic:2400:400")
    ok = True

    # 1. the data path gives the same batches on CPU and GPU
    gens = [torch.Generator().manual_seed(3) for _ in range(2)]
    cpu = next(batches(data.train, 64, mean=data.mean, std=data.std, device="cpu",
                       shuffle=True, augment=True, generator=gens[0]))
    gpu = next(batches(data.train.to(dev), 64, mean=data.mean, std=data.std, device=dev,
                       shuffle=True, augment=True, generator=gens[1]))
    same = torch.equal(cpu[1], gpu[1].cpu()) and torch.allclose(cpu[0], gpu[0].cpu())
    ok &= same
    print(f"data_path_cpu_equals_gpu={same}")

    # 2. population of 3 equals 3 runs one by one, on the GPU (fp32, so kernels compare)
    cfg = TrainConfig(lr=0.05, max_epochs=3, patience=3, batch_size=64, amp=False)
    fn = lambda: build("lenet5")  # noqa: E731
    members = [Member(state=init_model(fn, 10 + i).state_dict(), masks=None, seed=i)
               for i in range(3)]
    pops = train_population_stage(fn, members, data, cfg, device=dev)
    worst = 0.0
    for m, p in zip(members, pops, strict=True):
        model = fn().to(dev)
        model.load_state_dict(m.state)
        one = train_stage(model, None, data, cfg, seed=m.seed, device=dev)
        worst = max(worst, max(abs(a["val_acc"] - b["val_acc"])
                               for a, b in zip(one.history, p.history, strict=True)))
    ok &= worst <= 1.0
    print(f"population_vs_single_gpu_max_val_acc_diff={worst:.2f}")

    # 3. the CUDA-graph step equals the eager step (fp32), and bf16 stays close to fp32,
    #    on a BatchNorm network (resnet32), 12 steps of a population of 4
    fn32 = lambda: build("resnet32")  # noqa: E731
    states = [init_model(fn32, 20 + i).state_dict() for i in range(4)]
    torch.manual_seed(5)
    xs = torch.randn(12, 4, 64, 3, 32, 32, device=dev)
    ys = torch.randint(0, 10, (12, 4, 64), device=dev)
    losses = {}
    for label, amp, graphs in (("fp32_eager", False, False), ("fp32_graph", False, True),
                               ("bf16_graph", True, True)):
        c = TrainConfig(lr=0.02, batch_size=64, amp=amp, cuda_graphs=graphs)
        pop = Population(fn32, states, [None] * 4, c, dev)
        losses[label] = torch.stack([pop.train_step(x, y, 0.02) for x, y in zip(xs, ys,
                                                                               strict=True)])
        print(f"{label}_graph_used={pop._graph is not None} last_losses="
              f"{[round(v, 4) for v in losses[label][-1].tolist()]}")
    d_graph = (losses["fp32_graph"] - losses["fp32_eager"]).abs().max().item()
    d_bf16 = (losses["bf16_graph"] - losses["fp32_eager"]).abs().max().item()
    ok &= d_graph <= 1e-3 and d_bf16 <= 0.1
    print(f"graph_vs_eager_max_loss_diff={d_graph:.2e} bf16_vs_fp32_max_loss_diff={d_bf16:.2e}")

    # 4. population sizes chosen from this GPU's memory (a bf16 training step of every
    #    architecture; one that fails is reported and the others go on)
    for arch in ARCHITECTURES:
        sc = SearchConfig(train=default_train_config(arch))
        try:
            s = auto_population(lambda a=arch: build(a), sc, dev, 1000)
        except RuntimeError as err:
            ok = False
            s = f"failed ({str(err).splitlines()[0][:120]})"
        print(f"auto_population_{arch}={s}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
