"""Training of one ticket-search stage: masked SGD with early stopping on validation accuracy.

Everything random in an epoch (data order, augmentation, dropout) is derived from
``(seed, epoch)``, so a stage resumed from its end-of-epoch checkpoint continues exactly as an
uninterrupted one would.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from lth_core.config import TrainConfig
from lth_core.data import Dataset, Split, batches
from lth_core.engine.seeding import derive_seed
from lth_core.pruning import Masks, apply_masks


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


@dataclass
class StageOutcome:
    """Result of training one stage: the best-validation weights and how they were reached."""

    state: dict[str, Tensor]
    best_val_acc: float
    best_epoch: int
    epochs: int
    train_seconds: float
    history: list[dict[str, float]] = field(default_factory=list)


STATE_KEYS = ("epoch", "best_val_acc", "best_epoch", "bad_epochs", "train_seconds", "done")


@dataclass
class EarlyStopping:
    """One stage's early stopping on validation accuracy, shared by both engines.

    Keeps the best-validation weights; ``patience`` epochs without improvement, or
    ``max_epochs`` epochs, end the stage. ``checkpoint`` and ``resume`` use the checkpoint
    format of ``train_stage`` (so either engine resumes the other's runs).
    """

    patience: int
    max_epochs: int
    best_state: dict[str, Tensor] | None = None
    epoch: int = 0
    best_val_acc: float = -1.0
    best_epoch: int = -1
    bad_epochs: int = 0
    train_seconds: float = 0.0
    done: bool = False
    history: list[dict[str, float]] = field(default_factory=list)

    @classmethod
    def start(cls, cfg: TrainConfig, state: dict[str, Tensor],
              resume: dict[str, Any] | None = None) -> EarlyStopping:
        """A fresh stage from ``state``, or the one a checkpoint's ``resume`` left."""
        if resume is None:
            return cls(cfg.patience, cfg.max_epochs, best_state=state)
        return cls(cfg.patience, cfg.max_epochs, best_state=resume["best_state"],
                   history=list(resume["history"]), **{k: resume[k] for k in STATE_KEYS})

    def update(self, train_loss: float, val_acc: float, seconds: float,
               state: Callable[[], dict[str, Tensor]]) -> None:
        """Record one epoch; ``state()`` (a CPU copy of the weights) is taken on improvement."""
        self.train_seconds += seconds
        self.history.append({"epoch": self.epoch + 1, "train_loss": train_loss,
                             "val_acc": val_acc})
        if val_acc > self.best_val_acc:
            self.best_val_acc, self.best_epoch, self.bad_epochs = val_acc, self.epoch + 1, 0
            self.best_state = state()
        else:
            self.bad_epochs += 1
        self.epoch += 1
        self.done = self.bad_epochs >= self.patience or self.epoch >= self.max_epochs

    def checkpoint(self, model: dict[str, Tensor], optimizer: dict[str, Any]) -> dict[str, Any]:
        """The state ``on_epoch`` receives and ``resume`` takes back."""
        return {**{k: getattr(self, k) for k in STATE_KEYS}, "model": model,
                "optimizer": optimizer, "best_state": self.best_state,
                "history": list(self.history)}

    def outcome(self) -> StageOutcome:
        return StageOutcome(state=self.best_state, best_val_acc=self.best_val_acc,
                            best_epoch=self.best_epoch, epochs=self.epoch,
                            train_seconds=self.train_seconds, history=self.history)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` means CUDA when available, else CPU."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but no CUDA GPU is available")
    return dev


def autocast(device: torch.device, enabled: bool):
    """bf16 autocast on CUDA; a no-op on CPU, where it would change results for no speed."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


@contextmanager
def backend_flags(cfg: TrainConfig, device: torch.device) -> Iterator[None]:
    """``cfg.cudnn_benchmark`` on CUDA for the stage's duration (the global flag is restored
    after); off CUDA, and with the flag off, nothing is changed."""
    if not (cfg.cudnn_benchmark and torch.device(device).type == "cuda"):
        yield
        return
    old = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = old


@torch.no_grad()
def evaluate(
    model: nn.Module,
    split: Split,
    data: Dataset,
    device: torch.device,
    batch_size: int = 1000,
) -> float:
    """Top-1 accuracy in percent, in eval mode (the model's mode is restored), always in fp32.

    fp32 even inside a caller's autocast region: bf16 logits flip the argmax of near ties, and
    this accuracy decides close "sparse >= dense" calls.
    """
    was_training = model.training
    model.eval()
    correct = 0
    for x, y in batches(split, batch_size, mean=data.mean, std=data.std, device=device,
                        shuffle=False, augment=False, generator=None):
        with torch.autocast(torch.device(device).type, enabled=False):
            correct += int((model(x).argmax(1) == y).sum())
    model.train(was_training)
    return 100.0 * correct / max(len(split), 1)


def lr_at(cfg: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """Linear warm-up then cosine decay to 0 over ``max_epochs`` (per step, stateless)."""
    total = cfg.max_epochs * steps_per_epoch
    warm = cfg.warmup_epochs * steps_per_epoch
    if step < warm:
        return cfg.lr * (step + 1) / warm
    progress = (step - warm) / max(total - warm, 1)
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                           nesterov=cfg.nesterov and cfg.momentum > 0,
                           weight_decay=cfg.weight_decay)


def cpu_copy(t: Tensor) -> Tensor:
    """A CPU copy, contiguous whatever the memory format (on a CPU ``.cpu()`` would alias
    the live tensor)."""
    return t.detach().to("cpu", copy=True).contiguous()


def _cpu_state(model: nn.Module) -> dict[str, Tensor]:
    return {k: cpu_copy(v) for k, v in model.state_dict().items()}


def train_stage(
    model: nn.Module,
    masks: Masks | None,
    data: Dataset,
    cfg: TrainConfig,
    *,
    seed: int,
    device: torch.device,
    resume: dict[str, Any] | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    progress: Callable[[dict[str, float]], None] | None = None,
) -> StageOutcome:
    """Train ``model`` (already on ``device`` with masks applied) until early stopping.

    Keeps the weights of the epoch with the best validation accuracy; ``patience`` epochs
    without improvement end the stage. Pruned weights are held at exactly zero: their gradients
    are masked before each step and the weights re-masked after it, which also defeats weight
    decay and momentum. ``on_epoch`` receives a checkpointable state after every epoch;
    passing that state back as ``resume`` continues the stage exactly.
    """
    optimizer = make_optimizer(model, cfg)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    masks = {k: v.to(device) for k, v in masks.items()} if masks else None
    steps_per_epoch = math.ceil(len(data.train) / cfg.batch_size)
    if resume is not None:
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
    stop = EarlyStopping.start(cfg, _cpu_state(model) if resume is None else {}, resume)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    try:
        with backend_flags(cfg, device):
            while not stop.done:
                epoch = stop.epoch
                t0 = time.perf_counter()
                model.train()
                gen = torch.Generator().manual_seed(derive_seed(seed, "epoch", epoch))
                torch.manual_seed(derive_seed(seed, "dropout", epoch))
                total_loss, n_seen = torch.zeros((), device=device), 0
                for i, (x, y) in enumerate(batches(data.train, cfg.batch_size, mean=data.mean,
                                                   std=data.std, device=device, shuffle=True,
                                                   augment=cfg.augment, generator=gen)):
                    if cfg.channels_last:
                        x = x.contiguous(memory_format=torch.channels_last)
                    for group in optimizer.param_groups:
                        group["lr"] = lr_at(cfg, epoch * steps_per_epoch + i, steps_per_epoch)
                    with autocast(device, cfg.amp):
                        loss = loss_fn(model(x), y)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    apply_masks(model, masks, grad=True)
                    optimizer.step()
                    apply_masks(model, masks)
                    total_loss += loss.detach() * len(y)
                    n_seen += len(y)
                train_loss = float(total_loss) / max(n_seen, 1)
                if not math.isfinite(train_loss):
                    raise TrainingDiverged(f"training diverged (loss {train_loss}) in epoch "
                                           f"{epoch + 1}")
                val_acc = evaluate(model, data.val, data, device, cfg.eval_batch_size)
                stop.update(train_loss, val_acc, time.perf_counter() - t0,
                            lambda: _cpu_state(model))
                if progress is not None:
                    progress({"epoch": epoch + 1, "train_loss": train_loss, "val_acc": val_acc})
                if on_epoch is not None:
                    on_epoch(stop.checkpoint(_cpu_state(model),
                                             _optimizer_state_cpu(optimizer)))
    finally:
        if cfg.channels_last:  # the caller's model as it came
            model.to(memory_format=torch.contiguous_format)
    return stop.outcome()


def _optimizer_state_cpu(optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    sd = optimizer.state_dict()
    state = {k: {n: cpu_copy(t) if torch.is_tensor(t) else t for n, t in v.items()}
             for k, v in sd["state"].items()}
    return {"state": state, "param_groups": sd["param_groups"]}
