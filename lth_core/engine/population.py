"""Population engine: S ticket-search runs of one architecture trained as one vectorised model.

Parameters, buffers, masks and momentum of the S members are stacked along a leading axis and
the model runs under ``torch.func.vmap`` + ``functional_call``; one SGD step updates every
member. Each member keeps its own data order and augmentation (drawn from its own generator,
exactly as a single run draws them), its own learning-rate position, its own early-stopping
state and best-validation weights. A member that stops is dropped from the stack, so it no
longer changes and no longer costs compute. Checkpoints are written per member in the same
format as a single run's, so either engine can resume the other's runs.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, vmap
from tqdm.auto import tqdm

from lth_core.config import SearchConfig, TrainConfig
from lth_core.data import Dataset, Split, _stats_tensors, apply_augment, epoch_plan
from lth_core.engine.seeding import derive_seed, init_model
from lth_core.engine.train import (
    EarlyStopping,
    StageOutcome,
    TrainingDiverged,
    backend_flags,
    cpu_copy,
    lr_at,
    make_optimizer,
)
from lth_core.pruning import Masks


class StackedBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose statistics are computed explicitly in fp32.

    Under vmap and bf16 autocast, ``F.batch_norm``'s backward fails in torch 2.11 ("Expected
    running_mean to have type BFloat16"). Here the batch mean and variance are plain fp32
    reductions and the running statistics are updated in place outside autograd, so the
    layer works for stacked members under autocast; the output keeps the input's dtype. Same
    semantics as ``nn.BatchNorm2d`` (biased variance to normalise, unbiased for the running
    estimate); results agree with it up to float rounding.
    """

    def forward(self, x: Tensor) -> Tensor:
        xf = x.float()
        shape = (1, -1, 1, 1)
        if self.training:
            var, mean = torch.var_mean(xf, dim=(0, 2, 3), unbiased=False)
            with torch.no_grad():
                n = xf.numel() // xf.shape[1]
                m = self.momentum if self.momentum is not None else 0.1
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(var.detach() * (n / max(n - 1, 1)), alpha=m)
                self.num_batches_tracked.add_(1)
        else:
            mean, var = self.running_mean, self.running_var
        scale = torch.rsqrt(var + self.eps) * self.weight
        y = (xf - mean.view(shape)) * scale.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


CHANNELS_LAST_POPULATION = (
    "channels_last trains one run at a time for now (population 1): a population's step in "
    "that memory format does not yet compute what the default layout does")


class Population:
    """S models of one architecture, stacked, with a masked SGD step equal to torch's SGD.

    On CUDA (``cfg.amp``) convolutions and linear layers run in bf16, BatchNorm in fp32
    (``StackedBatchNorm2d``), the loss and the SGD update in fp32; elsewhere, or with ``amp``
    off, everything runs in fp32. With
    ``cfg.cuda_graphs`` the training step of full batches is captured once in a CUDA graph
    and replayed, so a step costs one launch instead of hundreds; everything per member
    (masks, learning rates, momentum) lives in device tensors the graph reads in place.
    """

    def __init__(self, model_fn: Callable[[], nn.Module], states: Sequence[dict[str, Tensor]],
                 masks: Sequence[Masks | None], cfg: TrainConfig, device: torch.device | str,
                 momentum: Sequence[dict[str, Tensor] | None] | None = None,
                 amp: bool | None = None):
        self.cfg = cfg
        self.device = torch.device(device)
        # amp=None: bf16 on CUDA when the recipe asks for it; True forces it (CPU tests)
        self.amp = (cfg.amp and self.device.type == "cuda") if amp is None else amp
        self.base = model_fn().to(self.device)
        # bf16: the weights of convolutions and linear layers are cast per step (the fp32
        # parameters stay the masters), the input is cast, BatchNorm works in fp32. Done by
        # hand, not by autocast: on CUDA a vmapped convolution with a bias slipped past
        # autocast's casts ("Input type BFloat16 and bias type float") in torch 2.11.
        self._low: set[str] = set()
        if self.amp:  # BatchNorm's forward swapped: names, parameters, buffers unchanged
            for m in self.base.modules():
                if type(m) is nn.BatchNorm2d:
                    m.__class__ = StackedBatchNorm2d
            self._low = {f"{m}.{n}" if m else n for m, mod in self.base.named_modules()
                         if isinstance(mod, nn.Conv2d | nn.Linear)
                         for n, _ in mod.named_parameters(recurse=False)}
        self.use_graph = bool(cfg.cuda_graphs) and self.device.type == "cuda"
        self._graph: Any = None
        self._graph_io: dict[str, Tensor] = {}
        self._eager_steps = 0
        self.param_names = [n for n, _ in self.base.named_parameters()]
        self.buffer_names = [n for n, _ in self.base.named_buffers()]
        self.size = len(states)
        dev = self.device
        # channels-last refused for now: a stacked step in that layout differed from the
        # default layout's by far more than rounding (tests/test_population.py), cause unknown
        if cfg.channels_last:
            raise ValueError(CHANNELS_LAST_POPULATION)
        self.params = {n: torch.stack([s[n] for s in states]).to(dev).requires_grad_()
                       for n in self.param_names}
        self.buffers = {n: torch.stack([s[n] for s in states]).to(dev) for n in self.buffer_names}
        mask_names = sorted({n for m in masks if m for n in m})
        self.masks = {n: torch.stack([m[n] if m else torch.ones_like(self.params[n][0],
                                                                      dtype=torch.bool)
                                      for m in masks]).to(dev) for n in mask_names}
        # Momentum buffers per member: a resumed member's own, zeros for a fresh one. Zeros
        # give torch's first step exactly (buf = 0 * m + g = g), so fresh and resumed members
        # can share a stack without resetting anyone.
        self.momentum: dict[str, Tensor] | None = None
        if cfg.momentum:
            given = list(momentum) if momentum is not None else [None] * self.size
            self.momentum = {n: torch.stack([
                m[n].to(dev) if m is not None else torch.zeros_like(self.params[n][j])
                for j, m in enumerate(given)]).detach() for n in self.param_names}
        # A model with dropout is stepped member by member (vmap would draw one batch of
        # noise for the whole stack, so a member's dropout would depend on its neighbours):
        # each member draws from its own generator state, as a single run does.
        self.has_dropout = any(isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0
                               for m in self.base.modules())
        self._rng: list[Tensor] = []
        if self.has_dropout:
            self.use_graph = False

        def fwd(p: dict[str, Tensor], b: dict[str, Tensor], x: Tensor) -> Tensor:
            return functional_call(self.base, (p, b), (x,))

        self._train_fwd = vmap(fwd, in_dims=(0, 0, 0), randomness="different")
        self._eval_fwd = vmap(fwd, in_dims=(0, 0, None))

    # -- training ----------------------------------------------------------------------------
    def _cast(self, x: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        """The parameters and input the forward sees: bf16 where ``amp`` says so."""
        if not self.amp:
            return self.params, x
        low = torch.bfloat16
        return {n: p.to(low) if n in self._low else p for n, p in self.params.items()}, x.to(low)

    def train_step(self, x: Tensor, y: Tensor, lrs: Tensor | float) -> Tensor:
        """One masked SGD step for every member; x is (S, B, ...), y (S, B). Returns (S,) loss."""
        self.base.train()
        lrs = torch.as_tensor(lrs, dtype=torch.float32)
        if lrs.dim() == 0:
            lrs = lrs.expand(self.size)
        if self.use_graph:
            return self._graph_step(x, y, lrs)
        return self._step(x, y, lrs.to(self.device))

    def _rng_state(self, state: Tensor | None = None) -> Tensor:
        """The device's global RNG state; with ``state``, set it first."""
        cuda = self.device.type == "cuda"
        if state is not None and cuda:
            torch.cuda.set_rng_state(state, self.device)
        elif state is not None:
            torch.set_rng_state(state)
        return torch.cuda.get_rng_state(self.device) if cuda else torch.get_rng_state()

    def seed_dropout(self, seeds: Sequence[int]) -> None:
        """Start each member's dropout stream, as ``torch.manual_seed`` starts a single run's."""
        if not self.has_dropout:
            return
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            self._rng = []
            for seed in seeds:
                torch.manual_seed(seed)
                self._rng.append(self._rng_state())

    def _member_forward(self, i: int, params: dict[str, Tensor], x: Tensor) -> Tensor:
        outer = self._rng_state()
        if self._rng:
            self._rng_state(self._rng[i])
        out = functional_call(self.base, ({n: p[i] for n, p in params.items()},
                                          {n: b[i] for n, b in self.buffers.items()}), (x,))
        if self._rng:
            self._rng[i] = self._rng_state()
        self._rng_state(outer)
        return out

    GRAPH_WARMUP = 3  # eager steps before capture: lazy init, and momentum buffers exist

    def _graph_step(self, x: Tensor, y: Tensor, lrs: Tensor) -> Tensor:
        """Replay the captured step; capture it first when needed. A batch of another shape
        (an epoch's short last batch) runs eagerly on the same tensors."""
        io = self._graph_io
        if self._graph is None:
            if self._eager_steps < self.GRAPH_WARMUP:
                self._eager_steps += 1
                return self._step(x, y, lrs.to(self.device))
            try:  # the eager steps before this one were the warm-up torch's docs ask for
                io = {"x": x.clone(), "y": y.clone(), "lr": lrs.to(self.device).clone()}
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph):
                    io["loss"] = self._step(io["x"], io["y"], io["lr"])
                self._graph, self._graph_io = graph, io
            except RuntimeError as err:  # an op that cannot be captured: stay eager
                tqdm.write(f"CUDA graph capture failed ({err}); training eagerly",
                           file=sys.stderr)
                self.use_graph, self._graph, self._graph_io = False, None, {}
                torch.cuda.synchronize(self.device)
                return self._step(x, y, lrs.to(self.device))
        elif x.shape != io["x"].shape:
            return self._step(x, y, lrs.to(self.device))
        io["x"].copy_(x)
        io["y"].copy_(y)
        io["lr"].copy_(lrs)
        self._graph.replay()
        return io["loss"].clone()

    def _step(self, x: Tensor, y: Tensor, lrs: Tensor) -> Tensor:
        params, x = self._cast(x)
        if self.has_dropout:
            logits = torch.stack([self._member_forward(i, params, x[i])
                                  for i in range(self.size)])
        else:
            logits = self._train_fwd(params, self.buffers, x)
        s, b = y.shape
        losses = F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), reduction="none",
                                 label_smoothing=self.cfg.label_smoothing).view(s, b).mean(1)
        names = self.param_names
        grads = list(torch.autograd.grad(losses.sum(), [self.params[n] for n in names]))
        self._sgd(names, grads, lrs)
        return losses.detach()

    @torch.no_grad()
    def _sgd(self, names: list[str], grads: list[Tensor], lrs: Tensor) -> None:
        cfg = self.cfg
        for i, n in enumerate(names):
            if n in self.masks:
                grads[i].mul_(self.masks[n])
        params = [self.params[n] for n in names]
        if cfg.weight_decay:
            torch._foreach_add_(grads, params, alpha=cfg.weight_decay)
        if self.momentum is not None:
            bufs = [self.momentum[n] for n in names]
            torch._foreach_mul_(bufs, cfg.momentum)
            torch._foreach_add_(bufs, grads)
            if cfg.nesterov:
                torch._foreach_add_(grads, bufs, alpha=cfg.momentum)
            else:
                grads = [buf.clone() for buf in bufs]
        lrs = lrs.to(params[0].dtype)
        for p, g, n in zip(params, grads, names, strict=True):
            p.sub_(g.mul_(lrs.view(-1, *([1] * (p.dim() - 1)))))
            if n in self.masks:
                p.mul_(self.masks[n])

    # -- evaluation --------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, split: Split, mean: Sequence[float], std: Sequence[float],
                 batch_size: int = 1000) -> Tensor:
        """Top-1 accuracy (percent) of every member on ``split``, shape (S,), in eval mode."""
        self.base.eval()
        m, s = _stats_tensors(mean, std, self.device)
        images, labels = split.images.to(self.device), split.labels.to(self.device)
        correct = torch.zeros(self.size, dtype=torch.long, device=self.device)
        for start in range(0, len(labels), batch_size):
            x = images[start:start + batch_size].float().sub_(m).div_(s)
            # fp32, as a single run's evaluate: bf16 would decide near-tie "best epoch" calls
            logits = self._eval_fwd(self.params, self.buffers, x)
            correct += (logits.argmax(-1) == labels[start:start + batch_size]).sum(1)
        self.base.train()
        return 100.0 * correct.double().cpu() / max(len(labels), 1)

    # -- members -----------------------------------------------------------------------------
    def keep(self, members: Sequence[int]) -> None:
        """Keep only ``members`` (indices into the current stack), dropping the others."""
        idx = torch.as_tensor(list(members), dtype=torch.long, device=self.device)
        with torch.no_grad():
            self.params = {n: p.index_select(0, idx).requires_grad_()
                           for n, p in self.params.items()}
            self.buffers = {n: b.index_select(0, idx) for n, b in self.buffers.items()}
            self.masks = {n: m.index_select(0, idx) for n, m in self.masks.items()}
            if self.momentum is not None:
                self.momentum = {n: b.index_select(0, idx)
                                 for n, b in self.momentum.items()}
        if self._rng:
            self._rng = [self._rng[i] for i in members]
        self.size = len(idx)
        self._graph, self._graph_io, self._eager_steps = None, {}, 0  # new tensors: recapture

    def member_state(self, i: int) -> dict[str, Tensor]:
        """Member ``i`` as a CPU ``state_dict`` of the architecture."""
        sd = self.base.state_dict()
        stacked = {**self.params, **self.buffers}
        return {k: cpu_copy(stacked[k][i]) for k in sd}

    def member_optimizer_state(self, i: int, template: dict[str, Any]) -> dict[str, Any]:
        """Member ``i``'s momentum as a ``torch.optim.SGD`` state dict (indices by parameter)."""
        state = {}
        if self.momentum is not None:
            state = {j: {"momentum_buffer": cpu_copy(self.momentum[n][i])}
                     for j, n in enumerate(self.param_names)}
        return {"state": state, "param_groups": template["param_groups"]}


def population_batches(
    split: Split, batch_size: int, *, mean: Sequence[float], std: Sequence[float],
    device: torch.device | str, augment: bool, generators: Sequence[torch.Generator],
) -> Iterator[tuple[Tensor, Tensor]]:
    """One epoch for every member at once: (x (S, B, 3, H, W) normalised, y (S, B)).

    Member i's batches are exactly those ``data.batches`` draws from ``generators[i]``. The
    whole epoch's draws go to the device in one copy (a copy per step would stall the host
    on the GPU); the gather, crop, flip and normalisation of all members happen in one
    device operation per step.
    """
    images = split.images.to(device)
    labels = split.labels.to(device)
    m, s = _stats_tensors(mean, std, device)
    plans = [list(epoch_plan(len(split), batch_size, shuffle=True, augment=augment,
                             generator=g, image_hw=tuple(split.images.shape[2:])))
             for g in generators]
    n_steps = len(plans[0])
    # per step: indices (S, B), crop rows (S*B, H) and cols (S*B, W), all on the device
    steps = [tuple(torch.stack([p[t][j] for p in plans]) for j in range(3 if augment else 1))
             for t in range(n_steps)]
    flat = [a for st in steps for a in st]
    sizes = [a.numel() for a in flat]
    pinned = torch.cat([a.flatten() for a in flat])
    if torch.device(device).type == "cuda":
        pinned = pinned.pin_memory()
    on_dev = torch.split(pinned.to(device, non_blocking=True), sizes)
    k = 0
    for st in steps:
        parts = [on_dev[k + j].view(a.shape) for j, a in enumerate(st)]
        k += len(st)
        idx = parts[0]
        x = images[idx.flatten()]
        if augment:
            x = apply_augment(x, parts[1].flatten(0, 1), parts[2].flatten(0, 1))
        x = x.float().sub_(m).div_(s)
        yield x.view(*idx.shape, *x.shape[1:]), labels[idx]


@dataclass
class Member:
    """One run's stage to train: rewound weights, masks, seed, and an optional resume state.

    ``max_epochs``, when given, is this member's own epoch budget in place of the config's:
    the length of its learning-rate schedule and its last epoch, as if it were trained alone
    with ``TrainConfig(max_epochs=...)``; so one population can train one initialisation
    under several budgets (``benchmarks.calibrate``).
    """

    state: dict[str, Tensor]
    masks: Masks | None
    seed: int
    resume: dict[str, Any] | None = None
    max_epochs: int | None = None

    def config(self, cfg: TrainConfig) -> TrainConfig:
        """The recipe this member trains under: ``cfg`` with its own ``max_epochs``."""
        if self.max_epochs is None or self.max_epochs == cfg.max_epochs:
            return cfg
        return dataclasses.replace(cfg, max_epochs=self.max_epochs)  # validated again


def train_population_stage(
    model_fn: Callable[[], nn.Module],
    members: Sequence[Member],
    data: Dataset,
    cfg: TrainConfig,
    *,
    device: torch.device,
    on_epoch: Callable[[int, dict[str, Any]], None] | None = None,
    progress: Callable[[dict[str, float]], None] | None = None,
) -> list[StageOutcome | TrainingDiverged]:
    """Train every member's stage at once; per member, the same as ``train.train_stage``.

    Returns, per member, its ``StageOutcome`` or the ``TrainingDiverged`` that stopped it
    (the other members go on). ``on_epoch(member_index, state)`` gets each member's
    checkpointable state, in ``train_stage``'s format; ``Member.max_epochs`` its own budget.
    """
    n = len(members)
    results: list[StageOutcome | TrainingDiverged | None] = [None] * n
    cfgs = [mb.config(cfg) for mb in members]
    stops = [EarlyStopping.start(c, mb.state, mb.resume)
             for c, mb in zip(cfgs, members, strict=True)]
    active = [i for i in range(n) if not stops[i].done]
    for i in range(n):
        if stops[i].done:
            results[i] = stops[i].outcome()
    if not active:
        return results  # type: ignore[return-value]

    def start_state(i: int) -> dict[str, Tensor]:
        return members[i].resume["model"] if members[i].resume else members[i].state

    def start_momentum(i: int) -> dict[str, Tensor] | None:
        r = members[i].resume
        if r is None or not r["optimizer"]["state"]:
            return None
        names = [n for n, _ in template_model.named_parameters()]
        return {names[int(j)]: v["momentum_buffer"] for j, v in r["optimizer"]["state"].items()}

    template_model = model_fn()
    # checkpoints use torch SGD's state-dict format, so either engine can resume them
    opt_template = make_optimizer(template_model, cfg).state_dict()
    pop = Population(model_fn, [start_state(i) for i in active],
                     [members[i].masks for i in active], cfg, device,
                     momentum=[start_momentum(i) for i in active])
    steps_per_epoch = math.ceil(len(data.train) / cfg.batch_size)
    train_split = data.train.to(device)

    with backend_flags(cfg, device):
        while active:
            t0 = time.perf_counter()
            epochs = [stops[i].epoch for i in active]
            gens = [torch.Generator().manual_seed(derive_seed(members[i].seed, "epoch", e))
                    for i, e in zip(active, epochs, strict=True)]
            pop.seed_dropout([derive_seed(members[i].seed, "dropout", e)
                              for i, e in zip(active, epochs, strict=True)])
            loss_sum = torch.zeros(len(active), dtype=torch.float64, device=device)
            n_seen = 0
            batches = population_batches(train_split, cfg.batch_size, mean=data.mean, std=data.std,
                                         device=device, augment=cfg.augment, generators=gens)
            for step, (x, y) in enumerate(batches):
                lrs = torch.tensor([lr_at(cfgs[i], e * steps_per_epoch + step, steps_per_epoch)
                                    for i, e in zip(active, epochs, strict=True)])
                losses = pop.train_step(x, y, lrs)
                loss_sum += losses.double() * y.shape[1]
                n_seen += y.shape[1]
            train_losses = (loss_sum / max(n_seen, 1)).tolist()
            val = pop.evaluate(data.val, data.mean, data.std, cfg.eval_batch_size).tolist()
            elapsed = time.perf_counter() - t0
            still = []
            for pos, i in enumerate(active):
                stop = stops[i]
                if not math.isfinite(train_losses[pos]):
                    results[i] = TrainingDiverged(f"training diverged (loss {train_losses[pos]}) "
                                                  f"in epoch {stop.epoch + 1}")
                    continue
                stop.update(train_losses[pos], val[pos], elapsed,
                            lambda pos=pos: pop.member_state(pos))
                if on_epoch is not None:
                    on_epoch(i, stop.checkpoint(pop.member_state(pos),
                                                pop.member_optimizer_state(pos, opt_template)))
                if stop.done:
                    results[i] = stop.outcome()
                else:
                    still.append(pos)
            if progress is not None:
                progress({"epoch": max(epochs) + 1, "active": len(still),
                          "val_acc": max(val) if val else float("nan")})
            if len(still) < len(active):
                pop.keep(still)
            active = [active[pos] for pos in still]
    return results  # type: ignore[return-value]


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
